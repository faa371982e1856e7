//! The kit's own checks, against scripted peers on real sockets (no workshop server): the
//! HTTP parsers, the keep-alive client, the epoll SSE readers, /proc and the generator.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;
use workshop_testkit::fleet::{Readers, Shared};
use workshop_testkit::*;

/// A peer on a free port that reads each request head and answers it with the next of
/// `answers`, on one connection.
fn scripted_peer(answers: Vec<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        for answer in answers {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
        }
        // Hold the connection open until the client is done with it.
        let _ = reader.read(&mut [0u8; 1]);
    });
    addr
}

#[test]
fn keep_alive_client_reads_chunked_and_sized_bodies_on_one_connection() {
    let addr = scripted_peer(vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n",
        "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
        "HTTP/1.1 204 No Content\r\n\r\n",
    ]);
    let mut conn = Conn::connect(addr).unwrap();
    let first = conn.get("/a").unwrap();
    assert_eq!((first.status, first.text()), (200, "hello world"));
    let second = conn.post_json("/b", b"{\"x\":1}").unwrap();
    assert_eq!((second.status, second.json()), (201, serde_json::json!({})));
    let mut streamed = Vec::new();
    let status = conn
        .get_streaming("/c", &mut |part| streamed.extend_from_slice(part))
        .unwrap();
    assert_eq!((status, streamed.len()), (204, 0));
}

#[test]
fn one_shot_reader_keeps_headers_and_reads_to_the_end_without_a_length() {
    let raw = b"HTTP/1.1 200 OK\r\nX-One: 1\r\nContent-Type: text/plain\r\n\r\nrest of it";
    let r = try_read_response(&mut &raw[..], false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-one"), Some("1"));
    assert_eq!(r.text(), "rest of it");
    let head = try_read_response(&mut &raw[..], true).unwrap();
    assert!(head.body.is_empty());
    let broken = b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n";
    assert!(try_read_response(&mut &broken[..], false).is_err());
    assert_eq!(read_chunk_size(&mut &b"1f;ext=2\r\n"[..]).unwrap(), 31);
    assert!(read_chunk_size(&mut &b"zz\r\n"[..]).is_err());
    assert_eq!(
        statuses(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 404 N\r\n\r\n"),
        [200, 404]
    );
}

/// An SSE peer: the head, `: open`, then events with `"seq":N` for each N in `seqs`.
fn sse_peer(seqs: &'static [u64]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        // Read the whole request first: closing on unread input would be a reset.
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let mut stream = reader.into_inner();
        let mut text = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
        text.push_str(": open\n\n");
        for seq in seqs {
            text.push_str(&format!("id: {seq}\ndata: {{\"seq\":{seq}}}\n\n"));
        }
        stream.write_all(text.as_bytes()).unwrap();
        // Then the server ends the stream.
    });
    addr
}

#[test]
fn epoll_readers_count_deliveries_duplicates_gaps_and_closes() {
    let shared = Shared::new(8);
    for seq in 0..8 {
        shared.mark_sent(seq);
    }
    let mut readers = Readers::start(2, &shared);
    readers.subscribe(sse_peer(&[0, 1, 2]), "/ch/a").unwrap();
    readers.subscribe(sse_peer(&[0, 2, 2, 3]), "/ch/a").unwrap();
    wait_for(
        Duration::from_secs(30),
        "both streams read and closed",
        || (shared.closed_by_server.load(Ordering::Relaxed) == 2).then_some(()),
    );
    shared.stop.store(true, Ordering::Release);
    let report = readers.join();
    assert_eq!(shared.opened.load(Ordering::Relaxed), 2);
    assert_eq!(
        (report.delivered, report.duplicates, report.gaps),
        (6, 1, 1)
    );
    assert_eq!((report.sockets, report.latency.us.len()), (2, 6));
}

#[test]
fn proc_readers_see_this_process() {
    let me = std::process::id();
    let status = ProcStatus::read(me);
    assert!(
        status.rss_kib > 0 && status.hwm_kib >= status.rss_kib,
        "{status:?}"
    );
    assert!(status.threads >= 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(open_sockets(me) >= 1 && open_fds(me) >= open_sockets(me));
    nodelay_listener(&listener);
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // Raised to the hard limit, so this process may now hold more than 1,024 descriptors.
    let limit = raise_fd_limit();
    assert_eq!(raise_fd_limit(), limit, "already at the hard limit");
    assert!(limit > open_fds(me) as u64, "{limit}");
    // Some CPU time is spent by now; spin until a clock tick shows it (0.0 is also what a
    // failed read of /proc gives).
    let started = std::time::Instant::now();
    while cpu_seconds(me) == 0.0 && started.elapsed() < std::time::Duration::from_secs(5) {
        std::hint::black_box((0..10_000u64).sum::<u64>());
    }
    assert!(cpu_seconds(me) > 0.0, "this process's CPU time is read");
    assert_eq!(
        ProcStatus::read(u32::MAX).rss_kib,
        0,
        "no such process: zeros"
    );
}

#[test]
fn the_generator_is_seeded_and_shuffles_into_a_permutation() {
    let (mut a, mut b) = (Rng::new(7), Rng::new(7));
    assert_eq!(a.bytes(16), b.bytes(16));
    assert_eq!(
        Rng::new(0).next_u64(),
        Rng(1).next_u64(),
        "seed 0 counts as 1"
    );
    let mut items: Vec<usize> = (0..50).collect();
    a.shuffle(&mut items);
    assert_ne!(items, (0..50).collect::<Vec<_>>());
    items.sort();
    assert_eq!(items, (0..50).collect::<Vec<_>>());
    assert!((0..100).all(|_| (3..=5).contains(&a.range(3, 5))));
}

/// A chunk that arrives in two pieces, with a read timing out between them (the server sends
/// the rest of an event once its socket has room again): the piece already read is kept.
/// Reading the chunk in place lost it, and every later chunk was then read from its middle.
#[test]
fn sse_keeps_a_chunk_split_across_a_timed_out_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_on, resume) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head).unwrap();
        let open = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n: open\n\n\r\n";
        stream.write_all(open.as_bytes()).unwrap();
        let event = "id: 7\ndata: {\"n\":7}\n\n";
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        let (first, rest) = chunk.split_at(9);
        stream.write_all(first.as_bytes()).unwrap();
        resume.recv().unwrap();
        stream.write_all(rest.as_bytes()).unwrap();
        let _ = stream.read(&mut head);
    });
    let mut sse = Sse::open(port, "/", &[]).unwrap();
    assert!(
        sse.next(Duration::from_millis(100)).is_none(),
        "half a chunk"
    );
    go_on.send(()).unwrap();
    let (id, data) = sse
        .next_message(Duration::from_secs(10))
        .expect("the whole event");
    assert_eq!((id.as_str(), data["n"].as_u64()), ("7", Some(7)));
}
