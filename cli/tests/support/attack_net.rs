//! Hostile HTTP servers on 127.0.0.1 for the registry and ADD attack tests: each
//! connection is handed to a handler that may answer anything, slowly, or nothing; every
//! request is recorded (method, path, headers) so a test can check where credentials
//! went.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Request, &mut TcpStream) + Send + Sync;

/// A server on a free port of 127.0.0.1; stops when dropped.
pub struct Server {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a test server");
        let addr = listener.local_addr().expect("its address").to_string();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen, stopping) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let (handler, seen, stopping) = (handler.clone(), seen.clone(), stopping.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    while let Some(req) = read_request(&mut conn) {
                        if stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        seen.lock().expect("requests").push(req.clone());
                        handler(&req, &mut conn);
                        let _ = conn.flush();
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
    })
}

/// Writes a whole response.
pub fn respond(conn: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

/// Writes a head promising `length` bytes (or chunked when `None`), then `body`.
pub fn respond_head(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    length: Option<u64>,
) {
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
}

/// Says nothing for up to `secs` seconds (a silent server), then closes.
pub fn silent(conn: &mut TcpStream, secs: u64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(secs)));
    let mut buf = [0u8; 1];
    let _ = conn.read(&mut buf);
}

/// Promises `length` bytes and drips one a second for up to `secs` seconds.
pub fn drip(conn: &mut TcpStream, length: u64, secs: u64) {
    respond_head(conn, 200, &[], Some(length));
    for _ in 0..secs {
        if conn.write_all(b"x").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Streams zeros without end (chunked) until the client goes away or `max` bytes.
pub fn endless(conn: &mut TcpStream, headers: &[(&str, &str)], max: u64) {
    respond_head(conn, 200, headers, None);
    let chunk = vec![b'{'; 64 * 1024];
    let mut sent = 0;
    while sent < max {
        let head = format!("{:x}\r\n", chunk.len());
        if conn.write_all(head.as_bytes()).is_err()
            || conn.write_all(&chunk).is_err()
            || conn.write_all(b"\r\n").is_err()
        {
            return;
        }
        sent += chunk.len() as u64;
    }
}
