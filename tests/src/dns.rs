//! A small authoritative DNS server on loopback, filled by the test (or by a records file for
//! `postern-test-dns`): A, AAAA, MX and TXT answers, NXDOMAIN for names it does not know (with
//! the zone's SOA, when negative answers are to be cached), and SERVFAIL for names told to fail, so SPF, DKIM and DMARC can be checked with no network.
//! UDP and TCP on one port; EDNS payload sizes honoured, truncation sends the client to TCP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

const A: u16 = 1;
const MX: u16 = 15;
const TXT: u16 = 16;
const SOA: u16 = 6;
const AAAA: u16 = 28;
const OPT: u16 = 41;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(IpAddr),
    Mx(u16, String),
    Txt(String),
}

impl Record {
    fn kind(&self) -> u16 {
        match self {
            Record::A(IpAddr::V4(_)) => A,
            Record::A(IpAddr::V6(_)) => AAAA,
            Record::Mx(..) => MX,
            Record::Txt(_) => TXT,
        }
    }
}

#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<Record>>,
    failing: Vec<String>,
    /// With a value, "no such name" and "no such record" answers carry an SOA whose minimum
    /// is this TTL, as a real zone's do, so resolvers cache them (RFC 2308). Without one
    /// (the tests' default: they change records as they go) nothing negative is cached.
    negative_ttl: Option<u32>,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<RwLock<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Listens on `127.0.0.1:port` (0: any free port), UDP and TCP.
    pub async fn start_on(port: u16) -> std::io::Result<DnsServer> {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind(("127.0.0.1", port)).await?;
            let addr = udp.local_addr()?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if port != 0 => return Err(e),
                Err(_) => continue,
            }
        };
        let addr = udp.local_addr()?;
        let zone = Arc::new(RwLock::new(Zone::default()));
        let udp_zone = Arc::clone(&zone);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = answer(&udp_zone, &buf[..n], true) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let tcp_zone = Arc::clone(&zone);
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    continue;
                };
                let zone = Arc::clone(&tcp_zone);
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(reply) = answer(&zone, &query, false) else {
                            return;
                        };
                        let Ok(len) = u16::try_from(reply.len()) else {
                            return;
                        };
                        if stream.write_all(&len.to_be_bytes()).await.is_err()
                            || stream.write_all(&reply).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Ok(DnsServer {
            addr,
            zone,
            tasks: vec![udp_task, tcp_task],
        })
    }

    pub async fn start() -> DnsServer {
        Self::start_on(0).await.expect("start the test DNS server")
    }

    pub fn add(&self, name: &str, record: Record) {
        let mut zone = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        zone.records.entry(key(name)).or_default().push(record);
    }

    pub fn txt(&self, name: &str, text: &str) {
        self.add(name, Record::Txt(text.to_string()));
    }

    /// Negative answers carry an SOA with this TTL from now on, so resolvers cache them.
    pub fn cache_negative_answers(&self, ttl: u32) {
        let mut zone = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        zone.negative_ttl = Some(ttl);
    }

    /// Queries for `name` answer SERVFAIL (a DNS outage, for temperror paths).
    pub fn fail(&self, name: &str) {
        let mut zone = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        zone.failing.push(key(name));
    }

    /// Loads `name TYPE value` lines: `A 127.0.0.1`, `AAAA ::1`, `MX 10 mx.example`,
    /// `TXT "text"` (quotes optional), or `SERVFAIL`. `#` starts a comment.
    pub fn load(&self, text: &str) -> Result<usize, String> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next());
            let value = parts.next().unwrap_or_default().trim();
            let bad = || format!("line {}: `{line}`", i + 1);
            match kind.map(str::to_ascii_uppercase).as_deref() {
                Some("A") | Some("AAAA") => {
                    self.add(name, Record::A(value.parse().map_err(|_| bad())?))
                }
                Some("MX") => {
                    let (pref, host) = value.split_once(char::is_whitespace).ok_or_else(bad)?;
                    let pref = pref.parse().map_err(|_| bad())?;
                    self.add(name, Record::Mx(pref, host.trim().to_string()));
                }
                Some("TXT") => self.txt(name, value.trim_matches('"')),
                Some("SERVFAIL") => self.fail(name),
                _ => return Err(bad()),
            }
            n += 1;
        }
        Ok(n)
    }
}

/// The reply to one query; `None` for something that is not a query.
fn answer(zone: &RwLock<Zone>, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = &query[..2];
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 || query[2] & 0x80 != 0 {
        return None;
    }
    let (name, end) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = query.get(12..end + 4)?;
    // EDNS: the client's UDP payload size, from an OPT record in the additional section.
    let arcount = u16::from_be_bytes([query[10], query[11]]);
    let edns = (arcount > 0
        && query.get(end + 4) == Some(&0)
        && query.get(end + 5..end + 7) == Some(&OPT.to_be_bytes()))
    .then(|| {
        query
            .get(end + 7..end + 9)
            .map_or(512, |b| u16::from_be_bytes([b[0], b[1]]))
    });
    let zone = zone.read().unwrap_or_else(PoisonError::into_inner);
    let name_key = key(&name);
    let (rcode, records): (u8, Vec<&Record>) = if zone.failing.contains(&name_key) {
        (2, Vec::new())
    } else {
        match zone.records.get(&name_key) {
            None => (3, Vec::new()),
            Some(all) => (0, all.iter().filter(|r| r.kind() == qtype).collect()),
        }
    };
    // An empty answer names the zone's SOA, when negative answers are to be cached.
    let soa = zone
        .negative_ttl
        .filter(|_| rcode != 2 && records.is_empty())
        .map(|ttl| soa(&name, ttl));
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(id);
    // QR, AA, RD copied; RA.
    out.push(0x84 | (query[2] & 0x01));
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&u16::from(soa.is_some()).to_be_bytes());
    out.extend_from_slice(&u16::from(edns.is_some()).to_be_bytes());
    out.extend_from_slice(question);
    for record in &records {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&record.kind().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let rdata = rdata(record);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    if let Some(soa) = soa {
        out.extend_from_slice(&soa);
    }
    if let Some(size) = edns {
        out.extend_from_slice(&[0, 0x00, 0x29]);
        out.extend_from_slice(&size.max(512).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    let limit = usize::from(edns.unwrap_or(512).max(512));
    if udp && out.len() > limit {
        // Too big for the datagram: header and question only, truncated.
        let mut short = out[..12].to_vec();
        short[2] |= 0x02;
        short[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
        short.extend_from_slice(question);
        return Some(short);
    }
    Some(out)
}

/// The SOA record of the zone `name` is in (its last label: every test zone is a TLD such as
/// `test`), with `ttl` as its own TTL and as the zone's minimum.
fn soa(name: &str, ttl: u32) -> Vec<u8> {
    let zone = name
        .trim_end_matches('.')
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let mut rdata = encode_name(&format!("ns.{zone}"));
    rdata.extend(encode_name(&format!("hostmaster.{zone}")));
    for value in [1, 3600, 600, 86400, ttl] {
        rdata.extend_from_slice(&u32::to_be_bytes(value));
    }
    let mut out = encode_name(zone);
    out.extend_from_slice(&SOA.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend(rdata);
    out
}

fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            return Some((labels.join("."), pos + 1));
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).into_owned());
        pos += 1 + len;
    }
}

fn rdata(record: &Record) -> Vec<u8> {
    match record {
        Record::A(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Record::A(IpAddr::V6(v6)) => v6.octets().to_vec(),
        Record::Mx(pref, host) => {
            let mut out = pref.to_be_bytes().to_vec();
            out.extend(encode_name(host));
            out
        }
        Record::Txt(text) => {
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(255) {
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
            if text.is_empty() {
                out.push(0);
            }
            out
        }
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`, type TXT, as a resolver sends it.
    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(encode_name(name));
        q.extend_from_slice(&TXT.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn negative_answers_carry_the_zones_soa_only_when_asked() {
        let zone = RwLock::new(Zone::default());
        let plain = answer(&zone, &query("_dmarc.nowhere.test"), true).expect("reply");
        assert_eq!(plain[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(&plain[8..10], &[0, 0], "no authority section");

        zone.write().expect("zone").negative_ttl = Some(60);
        let reply = answer(&zone, &query("_dmarc.nowhere.test"), true).expect("reply");
        assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(&reply[8..10], &[0, 1], "one authority record");
        let soa_at = query("_dmarc.nowhere.test").len();
        let (owner, end) = read_name(&reply, soa_at).expect("owner");
        assert_eq!(owner, "test");
        assert_eq!(&reply[end..end + 2], &SOA.to_be_bytes());
        assert_eq!(&reply[reply.len() - 4..], &60u32.to_be_bytes(), "minimum");
    }
}
