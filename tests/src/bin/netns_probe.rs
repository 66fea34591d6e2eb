//! A TCP listener and client for the interception tests, run inside a pod's namespace.
//!
//! `netns_probe listen ADDR LABEL`: prints `listening` once bound, then answers each
//! connection with one line: `LABEL original=ADDR` when the connection was redirected
//! there (ADDR is where it was going, from SO_ORIGINAL_DST), else `LABEL direct`.
//!
//! `netns_probe connect ADDR`: connects, prints the line it was answered with, and exits
//! 0; prints why and exits 1 if it could not connect. (Against `listen`, this is a
//! server-first protocol: the server speaks before the client sends anything.)
//!
//! `netns_probe echo ADDR`: prints `listening`, then sends back every byte it receives on
//! each connection until the client closes its side.
//!
//! `netns_probe send ADDR TEXT`: connects, sends TEXT, closes its sending side, prints
//! everything that comes back.
//!
//! `netns_probe http ADDR LABEL`: prints `listening`, then answers each HTTP/1.1 request
//! with `LABEL client_id=<the outrigger-client-id header, or ->`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["listen", addr, label] => listen(addr, label),
        ["connect", addr] => connect(addr),
        ["echo", addr] => serve(addr, echo),
        ["send", addr, text] => send(addr, text),
        ["http", addr, label] => {
            let label = label.to_string();
            serve(addr, move |stream| http(stream, &label))
        }
        _ => {
            eprintln!(
                "usage: netns_probe listen ADDR LABEL | connect ADDR | echo ADDR | send ADDR TEXT | http ADDR LABEL"
            );
            ExitCode::from(2)
        }
    }
}

fn listen(addr: &str, label: &str) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // The kernel answers SO_ORIGINAL_DST for any connection it tracks, redirected
        // or not; only an answer other than the local address means a redirect.
        let original = socket2::SockRef::from(&stream)
            .original_dst_v4()
            .ok()
            .and_then(|a| a.as_socket());
        let answer = match original {
            Some(original) if Some(original) != stream.local_addr().ok() => {
                format!("{label} original={original}")
            }
            _ => format!("{label} direct"),
        };
        let _ = writeln!(stream, "{answer}");
    }
    ExitCode::SUCCESS
}

fn connect(addr: &str) -> ExitCode {
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad address {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    // Only bounds a hang when a packet is dropped; the tests never expect a timeout.
    let limit = Duration::from_secs(10);
    let stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(stream) => stream,
        Err(e) => {
            println!("failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(limit));
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(_) => {
            println!("{}", line.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("failed: no answer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves each connection with `handle`, one thread each (a probe, not a server).
fn serve(addr: &str, handle: impl Fn(TcpStream) + Clone + Send + 'static) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let handle = handle.clone();
        std::thread::spawn(move || handle(stream));
    }
    ExitCode::SUCCESS
}

fn echo(mut stream: TcpStream) {
    let mut reader = match stream.try_clone() {
        Ok(reader) => reader,
        Err(_) => return,
    };
    let _ = std::io::copy(&mut reader, &mut stream);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn http(stream: TcpStream, label: &str) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(reader) => reader,
        Err(_) => return,
    });
    let mut client_id = "-".to_string();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("outrigger-client-id")
        {
            client_id = value.trim().to_string();
        }
    }
    let body = format!("{label} client_id={client_id}");
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn send(addr: &str, text: &str) -> ExitCode {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("bad address {addr}");
        return ExitCode::from(2);
    };
    // Only bounds a hang when a packet is dropped; the tests never expect a timeout.
    let limit = Duration::from_secs(10);
    let mut stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(stream) => stream,
        Err(e) => {
            println!("failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(limit));
    if stream.write_all(text.as_bytes()).is_err()
        || stream.shutdown(std::net::Shutdown::Write).is_err()
    {
        println!("failed: cannot send");
        return ExitCode::FAILURE;
    }
    let mut back = String::new();
    match stream.read_to_string(&mut back) {
        Ok(_) => {
            println!("{back}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("failed: {e}");
            ExitCode::FAILURE
        }
    }
}
