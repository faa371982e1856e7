//! workshop: the tests of the patches to how connections get threads (PATCHES.md 4, 8, 19),
//! over real sockets to a real server.

#[allow(
    dead_code,
    reason = "each test file uses part of the shared support module"
)]
mod patch_support;

use patch_support::*;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;
use tiny_http::{Response, Server};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The `ThreadId(N)`s in the bodies of the responses in `bytes`.
fn thread_ids(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let ids = text.split("ThreadId(").skip(1);
    ids.filter_map(|id| Some(id[..id.find(')')?].to_string()))
        .collect()
}

/// Patch 4: a connection was queued behind idle threads that had not woken yet, each then
/// held by a keep-alive connection, so it waited until one of those closed. Connections
/// now get a thread each: a burst of keep-alive connections, all held open, is answered.
/// (It takes a race to show the old behaviour: it failed 3 of 5 single bursts, so five
/// bursts, each to a new server with its pool's four idle threads.)
#[test]
fn patch_04_a_burst_of_keep_alive_connections_gets_a_thread_each() {
    for round in 0..5 {
        let port = serve(read_body);
        let mut burst: Vec<TcpStream> = (0..100).map(|_| connect(port)).collect();
        for stream in &mut burst {
            stream.write_all(GET).unwrap();
        }
        for (i, stream) in burst.iter_mut().enumerate() {
            let answer = read_until(stream, 10 * SECOND, |b| b.ends_with(b"read 0"));
            let text = answer.text();
            assert_eq!(
                answer.statuses(),
                vec![200],
                "burst {round}, connection {i}: {text}"
            );
        }
    }
}

/// Patch 8: `Server::from_listener_with_handler` calls the handler on each connection's own
/// thread (pipelined requests on one connection share it; another connection open at the
/// same time has its own), and a handler returning `false` ends the connection.
#[test]
fn patch_08_a_handler_answers_on_the_connections_own_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = Server::from_listener_with_handler(listener, |request| {
        let goes_on = request.url() != "/last";
        let thread = format!("{:?}", thread::current().id());
        let _ = request.respond(Response::from_string(thread));
        goes_on
    })
    .unwrap();
    let ends = |n: usize| move |b: &[u8]| thread_ids(b).len() == n;
    let mut first = connect(port);
    first.write_all(&GET.repeat(2)).unwrap();
    let one = read_until(&mut first, 10 * SECOND, ends(2));
    let mut second = connect(port);
    second.write_all(GET).unwrap();
    let two = read_until(&mut second, 10 * SECOND, ends(1));
    let (one, two) = (thread_ids(&one.bytes), thread_ids(&two.bytes));
    assert_eq!(one.len(), 2, "{:?}", one);
    assert_eq!(
        one[0], one[1],
        "pipelined requests on one connection, two threads"
    );
    assert_eq!(two.len(), 1, "{:?}", two);
    assert_ne!(one[0], two[0], "two open connections, one thread");
    // `false` ends the connection: what was pipelined after it is never read.
    let raw = b"GET /last HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange(port, raw, 10 * SECOND);
    assert_eq!(answer.statuses(), vec![200], "{}", answer.text());
    assert!(answer.closed_by_server, "the connection went on");
}

/// Patch 19: a handler holding a request (a long poll) had no way to learn that its client
/// had gone, so it held the thread for its whole wait. `Request::peer_has_closed` looks
/// without waiting: false while the client is there (also with a pipelined request waiting),
/// true once it has closed.
#[test]
fn patch_19_a_handler_sees_its_client_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, saw) = std::sync::mpsc::channel();
    let _server = Server::from_listener_with_handler(listener, move |request| {
        let start = std::time::Instant::now();
        let mut looks = vec![request.peer_has_closed()];
        while !request.peer_has_closed() && start.elapsed() < 5 * SECOND {
            thread::sleep(std::time::Duration::from_millis(10));
        }
        looks.push(request.peer_has_closed());
        seen.send(looks).unwrap();
        let _ = request.respond(Response::empty(204));
        false
    })
    .unwrap();
    let mut client = connect(port);
    client.write_all(&GET.repeat(2)).unwrap();
    thread::sleep(std::time::Duration::from_millis(300));
    drop(client);
    let looks = saw.recv_timeout(10 * SECOND).unwrap();
    assert_eq!(
        looks,
        vec![false, true],
        "open (a request waiting), then closed"
    );
}
