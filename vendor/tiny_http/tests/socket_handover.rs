//! workshop patch 8 (`Request::into_socket`, and the shutdown of a connection whose response
//! failed part-way), on real sockets.
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;
use tiny_http::{Request, Response, Server};

/// Generous: a slow machine must not fail a test that passes.
const PATIENCE: Duration = Duration::from_secs(30);

fn serve<H>(handler: H) -> (Server, SocketAddr)
where
    H: Fn(Request) -> bool + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (
        Server::from_listener_with_handler(listener, handler).unwrap(),
        addr,
    )
}

fn client(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads until `want` bytes have come; fails on end of file or the timeout before that.
fn read_exact(stream: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = vec![0u8; want];
    stream.read_exact(&mut got).unwrap();
    got
}

/// A server whose `/take` requests hand their socket over to the test; others get "ok".
fn handover_server() -> (Server, SocketAddr, Receiver<TcpStream>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let (server, addr) = serve(move |request| {
        if request.url() != "/take" {
            request.respond(Response::from_string("ok")).unwrap();
            return true;
        }
        let socket = request.into_socket().map_err(|(e, _)| e).unwrap();
        tx.lock().unwrap().send(socket).unwrap();
        false
    });
    (server, addr, rx)
}

#[test]
fn a_handed_over_socket_follows_earlier_responses_and_outlives_the_connection() {
    let (_server, addr, sockets) = handover_server();
    let mut client = client(addr);
    // Pipelined: the first response must be out before the socket changes hands.
    client
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /take HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut socket = sockets.recv_timeout(PATIENCE).unwrap();
    socket.write_all(b"HTTP/1.1 200 OK\r\n\r\nmine").unwrap();
    let mut everything = Vec::new();
    let first_end = loop {
        everything.extend(read_exact(&mut client, 1));
        if everything.ends_with(b"ok") {
            break everything.len();
        }
    };
    let mine = read_exact(&mut client, b"HTTP/1.1 200 OK\r\n\r\nmine".len());
    assert!(everything[..first_end].starts_with(b"HTTP/1.1 200"));
    assert_eq!(mine, b"HTTP/1.1 200 OK\r\n\r\nmine");
    // tiny_http reads no more requests on it, and neither reads nor shuts it down: what the
    // client sends is the new owner's to read, and the connection ends when it drops it.
    client.write_all(b"GET /take HTTP/1.1\r\n\r\n").unwrap();
    let mut heard = [0u8; 22];
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.read_exact(&mut heard).unwrap();
    assert_eq!(&heard, b"GET /take HTTP/1.1\r\n\r\n");
    socket.write_all(b" still here").unwrap();
    assert_eq!(read_exact(&mut client, 11), b" still here");
    drop(socket);
    assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "ends when dropped");
    assert!(
        sockets.try_recv().is_err(),
        "one hand-over, no second request"
    );
}

#[test]
fn a_handed_over_socket_sees_its_client_close() {
    let (_server, addr, sockets) = handover_server();
    let client = client(addr);
    (&client).write_all(b"GET /take HTTP/1.1\r\n\r\n").unwrap();
    let mut socket = sockets.recv_timeout(PATIENCE).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(socket.read(&mut [0u8; 1]).unwrap(), 0, "the client's FIN");
}

/// A body that breaks after a few bytes.
struct Broken(usize);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("the body broke"));
        }
        let n = self.0.min(buf.len());
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_response_that_fails_part_way_shuts_the_connection_down() {
    let (_server, addr) = serve(|request| {
        let response = Response::new(200.into(), vec![], Broken(3), Some(100), None);
        assert!(request.respond(response).is_err());
        true
    });
    let mut client = client(addr);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The answer is cut short at once: end of file (within the read timeout), never the
    // 100 bytes promised, and no wait for a next request on a connection left mid-message.
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert!(!got.ends_with(&[b'x'; 100]), "{:?}", got);
}
