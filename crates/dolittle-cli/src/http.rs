//! A small HTTP/1.0 client for the management API: one request per connection, the whole body
//! read until the Runtime closes it. The API answers small JSON documents, so this is all the
//! CLI needs, without an HTTP stack of its own.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the CLI waits for the Runtime to connect or to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach the Runtime at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("the Runtime at {address} answered with something that is not HTTP: {reason}")]
    Garbled { address: String, reason: String },
}

/// An answer: the status code and the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// The management endpoint of a Runtime, as `host:port`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: String,
    pub token: Option<String>,
}

impl Endpoint {
    /// `host`, `host:port` or `[v6]:port`; the port defaults to 51052.
    pub fn new(runtime: &str, token: Option<String>) -> Self {
        let has_port = match runtime.rsplit_once(':') {
            Some((host, port)) => {
                port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
            }
            None => false,
        };
        let address = if has_port {
            runtime.to_owned()
        } else {
            format!("{runtime}:51052")
        };
        Self { address, token }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Response, HttpError> {
        let unreachable = |reason: String| HttpError::Unreachable {
            address: self.address.clone(),
            reason,
        };
        let addresses: Vec<_> = self
            .address
            .to_socket_addrs()
            .map_err(|error| unreachable(error.to_string()))?
            .collect();
        let mut last_error = String::from("the name resolves to no address");
        let mut connected = None;
        // `localhost` may resolve to ::1 first while the Runtime listens on 127.0.0.1.
        for address in addresses {
            match TcpStream::connect_timeout(&address, TIMEOUT) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        let mut stream = connected.ok_or_else(|| unreachable(last_error))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(|error| unreachable(error.to_string()))?;
        let body = body.unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n",
            self.address
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream
            .write_all(request.as_bytes())
            .map_err(|error| unreachable(error.to_string()))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|error| unreachable(error.to_string()))?;
        parse_response(&raw).map_err(|reason| HttpError::Garbled {
            address: self.address.clone(),
            reason,
        })
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no end of the headers".to_owned())?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/") {
        return Err(format!("status line {status_line:?}"));
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_defaults_to_the_management_port() {
        assert_eq!(Endpoint::new("localhost", None).address, "localhost:51052");
        assert_eq!(Endpoint::new("10.0.0.1:9", None).address, "10.0.0.1:9");
        assert_eq!(Endpoint::new("[::1]:7", None).address, "[::1]:7");
    }

    #[test]
    fn responses_are_parsed() {
        let response =
            parse_response(b"HTTP/1.0 404 Not Found\r\ncontent-type: x\r\n\r\n{\"a\":1}")
                .expect("parses");
        assert_eq!(response.status, 404);
        assert_eq!(response.body, "{\"a\":1}");
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("kitchen 1/a"), "kitchen%201%2Fa");
    }
}
