//! Native fetchers: a local directory, or a base URL over HTTP(S). Each HTTP request runs on a
//! thread of its own, so several are really in flight.

pub mod server;

use crate::loader::{Fetcher, Reply};
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;

/// Files in a local directory.
pub struct DirFetcher(pub PathBuf);

impl Fetcher for DirFetcher {
    async fn fetch(&self, file: &str, range: Option<Range<u64>>) -> Result<Reply> {
        let path = self.0.join(file);
        let fail = |e: std::io::Error| Error::Fetch { file: path.display().to_string(), problem: e.to_string() };
        let mut f = std::fs::File::open(&path).map_err(fail)?;
        let mut bytes = Vec::new();
        match range {
            None => {
                f.read_to_end(&mut bytes).map_err(fail)?;
                Ok(Reply::Whole(bytes))
            }
            Some(r) => {
                f.seek(SeekFrom::Start(r.start)).map_err(fail)?;
                f.take(r.end - r.start).read_to_end(&mut bytes).map_err(fail)?;
                Ok(Reply::Range(bytes))
            }
        }
    }

    fn origin(&self) -> String {
        self.0.display().to_string()
    }
}

/// Files under a base URL (`http://` or `https://`).
pub struct HttpFetcher {
    base: String,
    agent: ureq::Agent,
}

impl HttpFetcher {
    /// A fetcher for files under `base`.
    pub fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(600))).build();
        HttpFetcher { base: base.trim_end_matches('/').to_string(), agent: config.into() }
    }
}

/// Reads a body to its end, keeping what arrived if the transfer breaks off.
fn read_all(mut body: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match body.read(&mut buf) {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

impl Fetcher for HttpFetcher {
    async fn fetch(&self, file: &str, range: Option<Range<u64>>) -> Result<Reply> {
        let url = format!("{}/{file}", self.base);
        let agent = self.agent.clone();
        let (tx, rx) = futures_channel::oneshot::channel();
        let target = url.clone();
        std::thread::spawn(move || {
            let mut request = agent.get(&target);
            if let Some(r) = &range {
                request = request.header("Range", format!("bytes={}-{}", r.start, r.end - 1));
            }
            let reply = match request.call() {
                Ok(mut response) => {
                    let partial = response.status() == 206;
                    let bytes = read_all(response.body_mut().with_config().limit(u64::MAX).reader());
                    Ok(if partial { Reply::Range(bytes) } else { Reply::Whole(bytes) })
                }
                Err(e) => Err(Error::Fetch { file: target, problem: e.to_string() }),
            };
            let _ = tx.send(reply);
        });
        rx.await.map_err(|_| Error::Fetch { file: url, problem: "the request thread died".into() })?
    }

    fn origin(&self) -> String {
        self.base.clone()
    }
}
