#![allow(dead_code)]
//! A small blocking HTTP/1.1 client over std sockets: exact about what
//! arrives (full responses, clean closes, resets), and independent of the
//! server's runtime.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a text body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

pub struct Client {
    reader: BufReader<TcpStream>,
}

impl From<TcpStream> for Client {
    fn from(stream: TcpStream) -> Self {
        Client {
            reader: BufReader::new(stream),
        }
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, path: &str) -> io::Result<()> {
        self.send_method("GET", path)
    }

    pub fn send_method(&mut self, method: &str, path: &str) -> io::Result<()> {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
        self.stream().write_all(request.as_bytes())
    }

    /// Reads one full response; `UnexpectedEof` if the connection closes
    /// before it is complete.
    pub fn read(&mut self) -> io::Result<Response> {
        let (status, headers) = self.read_head()?;
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .ok_or_else(|| io::Error::other("no content-length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Reads a response's status line and headers.
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                return Ok((status, headers));
            }
            let (name, value) = trimmed
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("bad header {trimmed:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }

    /// Reads one chunk of a chunked body: `None` for the last (empty) one,
    /// which ends the body cleanly.
    pub fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(line.trim_end(), 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk)?;
        if !chunk.ends_with(b"\r\n") {
            return Err(io::Error::other("a chunk without its CRLF"));
        }
        chunk.truncate(size);
        Ok((size > 0).then_some(chunk))
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(path)?;
        self.read()
    }

    /// Reads up to `length` bytes of a body slowly, 256 KiB at a time with
    /// a pause of 10 ms between: how many came before the end (or an
    /// error).
    pub fn read_slowly(&mut self, length: usize) -> usize {
        let mut chunk = vec![0u8; 256 << 10];
        let mut read = 0;
        while read < length {
            let want = chunk.len().min(length - read);
            match self.reader.read(&mut chunk[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        read
    }

    /// Whether the server has closed the connection: a read sees the end
    /// (or a reset) rather than data.
    pub fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}
