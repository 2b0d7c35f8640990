//! An HTTP/2 client written frame by frame, to behave as real clients that
//! hyper's own client never would: one that sends only part of the preface,
//! or never answers a PING.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn ends_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0
    }
}

pub struct H2 {
    stream: TcpStream,
}

impl H2 {
    /// Connects and sends the preface and empty settings.
    pub fn connect(addr: SocketAddr) -> io::Result<H2> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(crate::common::HANG))?;
        stream.write_all(PREFACE)?;
        let mut h2 = H2 { stream };
        h2.send(SETTINGS, 0, 0, &[])?;
        Ok(h2)
    }

    pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        let length = payload.len() as u32;
        let mut frame = vec![
            (length >> 16) as u8,
            (length >> 8) as u8,
            length as u8,
            kind,
            flags,
        ];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame)
    }

    /// `GET /` on `stream`, its headers HPACK-encoded from the static table.
    pub fn get(&mut self, stream: u32) -> io::Result<()> {
        // :method GET, :scheme http, :path /, :authority "test".
        let block = [0x82, 0x86, 0x84, 0x41, 0x04, b't', b'e', b's', b't'];
        self.send(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    }

    /// The next frame; `None` once the server has closed the connection.
    /// Settings are acknowledged, as a client must; PINGs are not.
    pub fn read(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; length];
        self.stream.read_exact(&mut payload)?;
        let frame = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            self.send(SETTINGS, ACK, 0, &[])?;
        }
        Ok(Some(frame))
    }

    /// Reads frames until one of `kind` on `stream`.
    pub fn read_until(&mut self, kind: u8, stream: u32) -> io::Result<Frame> {
        loop {
            let frame = self
                .read()?
                .ok_or_else(|| io::Error::other("closed before the frame came"))?;
            if frame.kind == kind && frame.stream == stream {
                return Ok(frame);
            }
        }
    }

    /// Reads frames until `stream`'s response has ended.
    pub fn read_response(&mut self, stream: u32) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        loop {
            let frame = self
                .read()?
                .ok_or_else(|| io::Error::other("closed before the response ended"))?;
            let done = frame.stream == stream && frame.ends_stream();
            frames.push(frame);
            if done {
                return Ok(frames);
            }
        }
    }

    /// Reads frames until the server closes the connection.
    pub fn read_to_close(&mut self) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read()? {
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// Whether the server closes `stream` (end of file or reset) within the
/// test's hang limit, reading and discarding what it sends.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(crate::common::HANG - Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
