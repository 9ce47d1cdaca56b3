//! Cluster mode: which shard owns a key, and where the shards are.
//!
//! A cluster-mode endpoint (an ElastiCache configuration endpoint, any node of a Redis or
//! Valkey cluster, a serverless cache) answers only for the slots of its own shard and
//! refuses commands whose keys hash to different slots. So the data plane asks the node it
//! was given for the slot map once, then talks to every shard's primary (or its replicas)
//! directly and routes each key by its slot. A standalone server is a map of one shard that
//! owns every slot, so callers treat both the same way.

use super::{Conn, Frame, RespError};
use crate::endpoint::Endpoint;

/// Slots of a cluster, numbered `0..SLOTS`.
pub const SLOTS: usize = 16384;

/// The slot `key` hashes to (CRC16 of the key, or of its `{hash tag}`, modulo 16384).
pub fn slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// Why the slot map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The node could not be reached, or refused to answer.
    #[error("cannot read the cluster's slot map from {endpoint}")]
    Ask {
        endpoint: Endpoint,
        #[source]
        source: RespError,
    },
    /// The node answered, but with a map the data plane cannot work on.
    #[error("the cluster's slot map from {endpoint} cannot be used: {why}")]
    Unusable { endpoint: Endpoint, why: String },
}

/// One shard: the slots it owns, its primary and its replicas. Their endpoints carry the
/// TLS setting and the credentials of the endpoint the map was read from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub primary: Endpoint,
    pub replicas: Vec<Endpoint>,
    /// Inclusive slot ranges, in ascending order.
    pub slots: Vec<(u16, u16)>,
}

/// The shards of an endpoint and which of them owns each slot.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Whether the endpoint runs in cluster mode.
    pub cluster: bool,
    pub shards: Vec<Shard>,
    /// For each slot, the index of its shard in `shards`.
    owner: Vec<u16>,
}

impl Topology {
    /// A server that is not in cluster mode: one shard that owns every slot.
    pub fn standalone(endpoint: &Endpoint) -> Topology {
        Topology {
            cluster: false,
            shards: vec![Shard {
                primary: endpoint.clone(),
                replicas: Vec::new(),
                slots: vec![(0, (SLOTS - 1) as u16)],
            }],
            owner: vec![0; SLOTS],
        }
    }

    /// The topology `conn` (a connection to `endpoint`) reports: standalone unless
    /// `INFO cluster` says cluster mode, else from `CLUSTER SLOTS`. Every slot must be
    /// served: a cluster with unassigned slots cannot be checked or loaded whole.
    pub async fn of(conn: &mut Conn, endpoint: &Endpoint) -> Result<Topology, TopologyError> {
        let ask = |source| TopologyError::Ask {
            endpoint: endpoint.clone(),
            source,
        };
        let info = conn
            .call(&[b"INFO", b"cluster"], |r| r.text())
            .await
            .map_err(ask)?;
        if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Ok(Topology::standalone(endpoint));
        }
        let shards = conn
            .call(&[b"CLUSTER", b"SLOTS"], |reply| {
                parse_slots(reply, endpoint)
            })
            .await
            .map_err(ask)?
            .map_err(|why| TopologyError::Unusable {
                endpoint: endpoint.clone(),
                why,
            })?;
        Topology::from_shards(shards).map_err(|why| TopologyError::Unusable {
            endpoint: endpoint.clone(),
            why,
        })
    }

    /// A cluster topology from its shards; every slot must belong to exactly one.
    fn from_shards(shards: Vec<Shard>) -> Result<Topology, String> {
        const FREE: u16 = u16::MAX;
        let mut owner = vec![FREE; SLOTS];
        for (i, shard) in shards.iter().enumerate() {
            for &(start, end) in &shard.slots {
                for slot in start..=end {
                    let held = &mut owner[slot as usize];
                    if *held != FREE {
                        return Err(format!("slot {slot} is claimed by two shards"));
                    }
                    *held = i as u16;
                }
            }
        }
        if let Some(first) = owner.iter().position(|&o| o == FREE) {
            let last = owner[first..]
                .iter()
                .position(|&o| o != FREE)
                .map_or(SLOTS - 1, |n| first + n - 1);
            return Err(format!(
                "slots {first}-{last} are served by no shard (the cluster is not ready, or is being resharded)"
            ));
        }
        Ok(Topology {
            cluster: true,
            shards,
            owner,
        })
    }

    /// The index in [`Topology::shards`] of the shard that owns `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.owner[slot(key) as usize] as usize
    }

    /// A hash tag whose keys belong to shard `index`: `{tag}suffix` keys all live there, so a
    /// benchmark or a probe can load every shard with keys of its own.
    pub fn tag_for(&self, index: usize) -> String {
        (0u32..)
            .map(|n| n.to_string())
            .find(|tag| self.owner[slot(tag.as_bytes()) as usize] as usize == index)
            .expect("every shard owns a slot, and some number hashes to each slot")
    }
}

/// A `MOVED` or `ASK` redirection: the slot now lives elsewhere, for good or for the
/// command in flight during a migration of the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    Moved { slot: u16, to: Endpoint },
    Ask { slot: u16, to: Endpoint },
}

impl Redirect {
    /// The slot redirected.
    pub fn slot(&self) -> u16 {
        match self {
            Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. } => *slot,
        }
    }

    /// The redirection an error reply asks for (`MOVED 3999 10.0.0.5:6379`), with the node
    /// reached like `from` (TLS, credentials); an empty host means `from`'s host.
    pub fn of(error: &[u8], from: &Endpoint) -> Option<Redirect> {
        let text = std::str::from_utf8(error).ok()?;
        let mut parts = text.split(' ');
        let (kind, slot, node) = (parts.next()?, parts.next()?, parts.next()?);
        let slot: u16 = slot.parse().ok().filter(|&s| (s as usize) < SLOTS)?;
        let (host, port) = node.rsplit_once(':')?;
        let to = node_endpoint(host, port.parse().ok()?, from);
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, to }),
            "ASK" => Some(Redirect::Ask { slot, to }),
            _ => None,
        }
    }
}

/// A node's endpoint from what a cluster says of it, reached like `like`.
fn node_endpoint(host: &str, port: u16, like: &Endpoint) -> Endpoint {
    Endpoint {
        host: if host.is_empty() || host == "?" {
            like.host.clone()
        } else {
            host.to_string()
        },
        port,
        db: 0,
        ..like.clone()
    }
}

/// Shards from a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id…], replicas…]…]`.
/// Ranges of the same primary are gathered into one shard.
fn parse_slots(reply: Frame<'_>, like: &Endpoint) -> Result<Vec<Shard>, String> {
    let shape = || "CLUSTER SLOTS did not answer [[start, end, [host, port]...]...]".to_string();
    let mut shards: Vec<Shard> = Vec::new();
    for range in reply.items().ok_or_else(shape)? {
        let mut parts = range.items().ok_or_else(shape)?;
        let bound = |f: Option<Frame<'_>>| {
            f.and_then(Frame::int)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| (n as usize) < SLOTS)
                .ok_or_else(shape)
        };
        let (start, end) = (bound(parts.next())?, bound(parts.next())?);
        let node = |f: Frame<'_>| {
            let mut fields = f.items().ok_or_else(shape)?;
            let host = fields.next().and_then(Frame::bytes).ok_or_else(shape)?;
            let port = fields
                .next()
                .and_then(Frame::int)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(shape)?;
            Ok::<_, String>(node_endpoint(&String::from_utf8_lossy(host), port, like))
        };
        let primary = node(parts.next().ok_or_else(shape)?)?;
        let replicas = parts.map(node).collect::<Result<Vec<_>, _>>()?;
        match shards.iter_mut().find(|s| s.primary == primary) {
            Some(shard) => shard.slots.push((start, end)),
            None => shards.push(Shard {
                primary,
                replicas,
                slots: vec![(start, end)],
            }),
        }
    }
    for shard in &mut shards {
        shard.slots.sort_unstable();
    }
    shards.sort_by_key(|s| s.slots[0]);
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, port: u16) -> Endpoint {
        Endpoint::parse(&format!("rediss://:pw@{host}:{port}")).unwrap()
    }

    #[test]
    fn keys_hash_to_the_slots_every_client_computes() {
        // The reference values of the cluster specification.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn a_slot_map_routes_every_slot_and_names_the_gaps() {
        let shard = |port, slots: Vec<(u16, u16)>| Shard {
            primary: at("10.0.0.1", port),
            replicas: vec![],
            slots,
        };
        let whole = Topology::from_shards(vec![
            shard(7000, vec![(0, 5460)]),
            shard(7001, vec![(5461, 10922)]),
            shard(7002, vec![(10923, 16383)]),
        ])
        .unwrap();
        assert_eq!(whole.shard_of(b"bar"), 0); // slot 5061
        assert_eq!(whole.shard_of(b"foo"), 2); // slot 12182
        for i in 0..3 {
            let tag = whole.tag_for(i);
            assert_eq!(whole.shard_of(format!("{{{tag}}}:k").as_bytes()), i);
        }
        assert_eq!(
            Topology::from_shards(vec![
                shard(7000, vec![(0, 100)]),
                shard(7001, vec![(200, 16383)])
            ])
            .unwrap_err(),
            "slots 101-199 are served by no shard (the cluster is not ready, or is being resharded)"
        );
        assert_eq!(
            Topology::from_shards(vec![
                shard(7000, vec![(0, 16383)]),
                shard(7001, vec![(9, 9)])
            ])
            .unwrap_err(),
            "slot 9 is claimed by two shards"
        );
    }

    #[test]
    fn redirections_name_the_node_reached_like_the_one_asked() {
        let from = at("cache.example", 6379);
        assert_eq!(
            Redirect::of(b"MOVED 3999 10.0.0.5:6380", &from),
            Some(Redirect::Moved {
                slot: 3999,
                to: at("10.0.0.5", 6380)
            })
        );
        assert_eq!(
            Redirect::of(b"ASK 12 :6381", &from),
            Some(Redirect::Ask {
                slot: 12,
                to: at("cache.example", 6381)
            })
        );
        assert_eq!(Redirect::of(b"MOVED 99999 10.0.0.5:6380", &from), None);
        assert_eq!(Redirect::of(b"WRONGTYPE Operation", &from), None);
    }

    #[test]
    fn cluster_slots_replies_become_shards_with_their_replicas() {
        let like = at("cfg.example", 6379);
        let reply = b"*2\r\n\
            *4\r\n:5461\r\n:16383\r\n*3\r\n$8\r\n10.0.0.2\r\n:6379\r\n$2\r\nid\r\n*2\r\n$0\r\n\r\n:6390\r\n\
            *3\r\n:0\r\n:5460\r\n*2\r\n$8\r\n10.0.0.1\r\n:6379\r\n";
        let shards = crate::resp::decoded(reply, |f| parse_slots(f, &like)).unwrap();
        assert_eq!(
            shards,
            vec![
                Shard {
                    primary: at("10.0.0.1", 6379),
                    replicas: vec![],
                    slots: vec![(0, 5460)]
                },
                Shard {
                    primary: at("10.0.0.2", 6379),
                    replicas: vec![at("cfg.example", 6390)],
                    slots: vec![(5461, 16383)]
                },
            ]
        );
    }
}
