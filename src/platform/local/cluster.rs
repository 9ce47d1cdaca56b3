//! Cluster-mode groups rehearsed: how many shards and replicas a template asks for (refusing
//! what ElastiCache would refuse), the slots split as ElastiCache splits them, and the
//! cluster formed from its server processes (`CLUSTER ADDSLOTSRANGE`, `MEET`, `REPLICATE`).
//!
//! A rehearsal of a sharded group must be a real cluster: clients follow `MOVED`
//! redirections and a failover is `CLUSTER FAILOVER`, so a cluster faked as one server would
//! predict the wrong client impact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::{self, Access};
use super::state::{Shard, slots_text};
use super::template;
use super::{LocalError, Result, Run};

pub use crate::platform::contract::{SLOTS, even_slots};

/// How long a new cluster may take to agree on its nodes and slots.
const FORM_DEADLINE: Duration = Duration::from_secs(60);

/// What a replication group's properties ask for.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    pub cluster_mode: bool,
    /// The node groups (one without cluster mode, with no slots).
    pub shards: Vec<Shard>,
    /// Nodes (primary and replicas) of each shard.
    pub nodes: Vec<u32>,
}

/// `value` as a whole number within what ElastiCache allows for `key`.
fn bounded(context: &str, key: &str, value: &Value, low: u32, high: u32) -> Result<u32> {
    let text = template::text(value);
    let refused = |what: String| {
        LocalError::Refused(format!(
            "{context}.{key}: {what}; ElastiCache allows {low} to {high}"
        ))
    };
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| refused(format!("`{text}` is not a whole number")))?;
    if !(low..=high).contains(&n) {
        return Err(refused(format!("{n} is out of range")));
    }
    Ok(n)
}

/// Reads `0-5461` or `0-100,200-300` (NodeGroupConfiguration's `Slots`).
fn parse_slots(context: &str, text: &str) -> Result<Vec<(u16, u16)>> {
    let refused = || {
        LocalError::Refused(format!(
            "{context}.Slots: `{text}` is not startkey-endkey within 0-{}",
            SLOTS - 1
        ))
    };
    text.split(',')
        .map(|range| {
            let (a, b) = range.trim().split_once('-').ok_or_else(refused)?;
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| refused())?,
                b.trim().parse().map_err(|_| refused())?,
            );
            if a > b || b >= SLOTS {
                return Err(refused());
            }
            Ok((a, b))
        })
        .collect()
}

/// The shards and nodes a replication group's properties ask for, or why ElastiCache
/// would refuse them. `prop` evaluates one property; `context` names the resource.
pub fn layout(context: &str, prop: impl Fn(&str) -> Result<Option<Value>>) -> Result<Layout> {
    let props = format!("{context}.Properties");
    let num_node_groups = prop("NumNodeGroups")?
        .map(|v| bounded(&props, "NumNodeGroups", &v, 1, 500))
        .transpose()?;
    let replicas = prop("ReplicasPerNodeGroup")?
        .map(|v| bounded(&props, "ReplicasPerNodeGroup", &v, 0, 5))
        .transpose()?;
    let clusters = prop("NumCacheClusters")?
        .map(|v| bounded(&props, "NumCacheClusters", &v, 1, 6))
        .transpose()?;
    let configs = match prop("NodeGroupConfiguration")? {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(LocalError::Refused(format!(
                "{props}.NodeGroupConfiguration: not a list of node groups"
            )));
        }
    };
    let mode = prop("ClusterMode")?.map(|v| template::text(&v).to_ascii_lowercase());
    let parameter_group = prop("CacheParameterGroupName")?
        .map(|v| template::text(&v))
        .unwrap_or_default();
    let shard_count = match (num_node_groups, configs.len()) {
        (Some(n), 0) => n,
        (None, 0) => 1,
        (None, len) => u32::try_from(len).unwrap_or(u32::MAX),
        (Some(n), len) if n as usize == len => n,
        (Some(n), len) => {
            return Err(LocalError::Refused(format!(
                "{props}: NumNodeGroups is {n} but NodeGroupConfiguration lists {len} node group(s); make them agree"
            )));
        }
    };
    if shard_count > 500 {
        return Err(LocalError::Refused(format!(
            "{props}.NodeGroupConfiguration: {shard_count} node groups; ElastiCache allows 1 to 500"
        )));
    }
    let cluster_mode = shard_count > 1
        || mode.as_deref() == Some("enabled")
        || parameter_group.contains("cluster.on");
    if !cluster_mode {
        if mode.as_deref() == Some("disabled") && shard_count > 1 {
            return Err(LocalError::Refused(format!(
                "{props}: ClusterMode is disabled but {shard_count} node groups are asked for; a group without cluster mode has one"
            )));
        }
        let replicas_of_config = configs
            .first()
            .and_then(|c| c.get("ReplicaCount"))
            .map(|v| bounded(&props, "NodeGroupConfiguration[0].ReplicaCount", v, 0, 5))
            .transpose()?;
        let count = match (clusters, replicas_of_config.or(replicas)) {
            (Some(n), _) => n,
            (None, Some(r)) => r + 1,
            (None, None) => 1,
        };
        return Ok(Layout {
            cluster_mode: false,
            shards: Vec::new(),
            nodes: vec![count],
        });
    }
    if mode.as_deref() == Some("disabled") {
        return Err(LocalError::Refused(format!(
            "{props}: ClusterMode is disabled but {shard_count} node groups are asked for; a group without cluster mode has one"
        )));
    }
    if clusters.is_some() {
        return Err(LocalError::Refused(format!(
            "{props}.NumCacheClusters: applies to a group without cluster mode; give a sharded group ReplicasPerNodeGroup instead"
        )));
    }
    let shard_count = u16::try_from(shard_count).expect("at most 500");
    let even = even_slots(shard_count);
    let mut shards = Vec::new();
    let mut nodes = Vec::new();
    for (i, &even) in even.iter().enumerate() {
        let config = configs.get(i);
        let here = format!("{props}.NodeGroupConfiguration[{i}]");
        let field = |key: &str| config.and_then(|c| c.get(key)).filter(|v| !v.is_null());
        let id = field("NodeGroupId")
            .map(template::text)
            .unwrap_or_else(|| format!("{:04}", i + 1));
        if id.is_empty() || id.len() > 4 || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(LocalError::Refused(format!(
                "{here}.NodeGroupId: `{id}` is not 1 to 4 digits"
            )));
        }
        let slots = match field("Slots") {
            Some(s) => parse_slots(&here, &template::text(s))?,
            None => vec![even],
        };
        let count = match field("ReplicaCount") {
            Some(v) => bounded(&here, "ReplicaCount", v, 0, 5)?,
            None => replicas.unwrap_or(0),
        };
        shards.push(Shard { id, slots });
        nodes.push(count + 1);
    }
    check_coverage(&props, &shards)?;
    Ok(Layout {
        cluster_mode: true,
        shards,
        nodes,
    })
}

/// Every slot served by exactly one shard, as a cluster needs.
fn check_coverage(props: &str, shards: &[Shard]) -> Result<()> {
    let mut owner: BTreeMap<u16, &str> = BTreeMap::new();
    for shard in shards {
        for &(a, b) in &shard.slots {
            for slot in a..=b {
                if let Some(other) = owner.insert(slot, &shard.id) {
                    return Err(LocalError::Refused(format!(
                        "{props}.NodeGroupConfiguration: slot {slot} is in node groups {other} and {}; each slot belongs to one",
                        shard.id
                    )));
                }
            }
        }
    }
    if let Some(missing) = (0..SLOTS).find(|s| !owner.contains_key(s)) {
        return Err(LocalError::Refused(format!(
            "{props}.NodeGroupConfiguration: slot {missing} is in no node group; the Slots must cover 0-{}",
            SLOTS - 1
        )));
    }
    Ok(())
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub struct ClusterNode {
    pub id: String,
    pub flags: Vec<String>,
    /// The id of its primary, for a replica.
    pub primary: Option<String>,
    pub slots: Vec<String>,
}

/// Reads a `CLUSTER NODES` reply.
pub fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(ClusterNode {
                id: f[0].to_string(),
                flags: f[2].split(',').map(str::to_string).collect(),
                primary: Some(f[3]).filter(|m| *m != "-").map(str::to_string),
                slots: f[8..].iter().map(|s| s.to_string()).collect(),
            })
        })
        .collect()
}

impl ClusterNode {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// `CLUSTER NODES` as the node on `access` sees the cluster.
pub async fn nodes_seen(access: &Access) -> Result<Vec<ClusterNode>> {
    let text: String = server::command(access, redis::cmd("CLUSTER").arg("NODES")).await?;
    Ok(parse_nodes(&text))
}

/// The node's own line of `CLUSTER NODES`.
pub async fn myself(access: &Access) -> Result<ClusterNode> {
    nodes_seen(access)
        .await?
        .into_iter()
        .find(|n| n.has("myself"))
        .ok_or_else(|| {
            LocalError::Refused(format!(
                "the node on port {} does not list itself in CLUSTER NODES",
                access.port
            ))
        })
}

/// `CLUSTER INFO` as fields.
pub async fn cluster_info(access: &Access) -> Result<BTreeMap<String, String>> {
    let text: String = server::command(access, redis::cmd("CLUSTER").arg("INFO")).await?;
    Ok(server::parse_info(&text))
}

impl Run<'_, '_> {
    /// Makes the group's nodes one cluster, each shard's primary serving its slots and its
    /// replicas replicating it, and waits until every node says the cluster is `ok`. Does
    /// only what is missing, so a resumed deploy calls it again safely.
    pub(super) async fn form_cluster(&self, id: &str) -> Result<()> {
        let g = self.group(id)?.clone();
        let access: Vec<Access> = g
            .nodes
            .iter()
            .map(|n| self.access(&g, n))
            .collect::<Result<_>>()?;
        for (s, shard) in g.shards.iter().enumerate() {
            let p = g.shard_nodes(s)[0];
            if myself(&access[p]).await?.slots.is_empty() {
                let mut cmd = redis::cmd("CLUSTER");
                cmd.arg("ADDSLOTSRANGE");
                for &(a, b) in &shard.slots {
                    cmd.arg(a).arg(b);
                }
                server::command::<()>(&access[p], &cmd).await?;
            }
        }
        for a in &access[1..] {
            server::command::<()>(
                a,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(access[0].port),
            )
            .await?;
        }
        let total = g.nodes.len();
        let wait = Wait::new(format!("every node of {id} to know the others"));
        while !all_known(&access, total).await? {
            wait.tick().await?;
        }
        for s in 0..g.shard_count() {
            let members = g.shard_nodes(s);
            let primary_id = myself(&access[members[0]]).await?.id;
            for &r in &members[1..] {
                let me = myself(&access[r]).await?;
                if me.primary.as_deref() != Some(primary_id.as_str()) {
                    server::command::<()>(
                        &access[r],
                        redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary_id),
                    )
                    .await?;
                }
            }
        }
        let replica: Vec<bool> = (0..total).map(|i| g.primary_of(i) != i).collect();
        let wait = Wait::new(format!("the cluster {id} to be ok on every node"));
        while !all_ok(&access, &replica).await? {
            wait.tick().await?;
        }
        self.ctx.note(format!(
            "{id}: a cluster of {} shard(s) ({}), {total} node(s)",
            g.shards.len(),
            g.shards
                .iter()
                .map(|s| format!("{} {}", s.id, slots_text(&s.slots)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(())
    }
}

/// The end of a wait for a cluster to settle: [`Wait::tick`] sleeps a moment, or fails
/// once the deadline has passed.
pub struct Wait {
    until: Instant,
    what: String,
}

impl Wait {
    /// A wait of at most [`FORM_DEADLINE`] for `what`.
    pub fn new(what: String) -> Wait {
        Wait {
            until: Instant::now() + FORM_DEADLINE,
            what,
        }
    }

    pub async fn tick(&self) -> Result<()> {
        if Instant::now() > self.until {
            return Err(LocalError::Timeout(format!(
                "waited {} s for {}",
                FORM_DEADLINE.as_secs(),
                self.what
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

/// Whether every node in `access` lists `total` nodes, none still in a handshake.
async fn all_known(access: &[Access], total: usize) -> Result<bool> {
    for a in access {
        let seen = nodes_seen(a).await?;
        if seen.len() != total || seen.iter().any(|n| n.has("handshake") || n.has("noaddr")) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether every node says the cluster is `ok` with all slots assigned, and every replica
/// (`replica[i]`) is linked to its primary.
async fn all_ok(access: &[Access], replica: &[bool]) -> Result<bool> {
    for (a, &is_replica) in access.iter().zip(replica) {
        let info = cluster_info(a).await?;
        if info.get("cluster_state").is_none_or(|s| s != "ok")
            || info
                .get("cluster_slots_assigned")
                .is_none_or(|n| *n != SLOTS.to_string())
        {
            return Ok(false);
        }
        if is_replica
            && server::info(a, "replication")
                .await?
                .get("master_link_status")
                .is_none_or(|s| s != "up")
        {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> impl Fn(&str) -> Result<Option<Value>> {
        move |key| Ok(value.get(key).cloned())
    }

    fn refused(value: Value) -> String {
        layout("Resources.G", props(value)).unwrap_err().to_string()
    }

    #[test]
    fn slots_split_like_elasticache() {
        assert_eq!(even_slots(1), [(0, 16383)]);
        assert_eq!(even_slots(2), [(0, 8191), (8192, 16383)]);
        assert_eq!(even_slots(3), [(0, 5461), (5462, 10922), (10923, 16383)]);
        let many = even_slots(500);
        assert_eq!(
            (many[0], many[383], many[384]),
            ((0, 32), (12639, 12671), (12672, 12703))
        );
        assert_eq!(many[499], (16352, 16383));
    }

    #[test]
    fn shards_and_replicas_from_the_properties() {
        let l = layout(
            "Resources.G",
            props(json!({"NumNodeGroups": "3", "ReplicasPerNodeGroup": 1})),
        )
        .unwrap();
        assert!(l.cluster_mode);
        assert_eq!(l.nodes, [2, 2, 2]);
        let ids: Vec<(String, String)> = l
            .shards
            .iter()
            .map(|s| (s.id.clone(), s.slots_text()))
            .collect();
        assert_eq!(
            ids,
            [
                ("0001".to_string(), "0-5461".to_string()),
                ("0002".to_string(), "5462-10922".to_string()),
                ("0003".to_string(), "10923-16383".to_string())
            ]
        );
        let l = layout(
            "Resources.G",
            props(json!({"NodeGroupConfiguration": [
                {"NodeGroupId": "0007", "Slots": "0-99", "ReplicaCount": 2},
                {"Slots": "100-16383"}]})),
        )
        .unwrap();
        assert_eq!(l.nodes, [3, 1]);
        assert_eq!(l.shards[0].id, "0007");
        assert_eq!(l.shards[1].slots, [(100, 16383)]);
        let l = layout("Resources.G", props(json!({"NumCacheClusters": 2}))).unwrap();
        assert_eq!(
            l,
            Layout {
                cluster_mode: false,
                shards: Vec::new(),
                nodes: vec![2]
            }
        );
    }

    #[test]
    fn values_elasticache_refuses_are_refused_with_the_range() {
        assert_eq!(
            refused(json!({"NumNodeGroups": 501})),
            "Resources.G.Properties.NumNodeGroups: 501 is out of range; ElastiCache allows 1 to 500"
        );
        assert_eq!(
            refused(json!({"NumNodeGroups": "abc"})),
            "Resources.G.Properties.NumNodeGroups: `abc` is not a whole number; ElastiCache allows 1 to 500"
        );
        assert_eq!(
            refused(json!({"NumNodeGroups": 0})),
            "Resources.G.Properties.NumNodeGroups: 0 is out of range; ElastiCache allows 1 to 500"
        );
        assert_eq!(
            refused(json!({"NumNodeGroups": 3, "ReplicasPerNodeGroup": 6})),
            "Resources.G.Properties.ReplicasPerNodeGroup: 6 is out of range; ElastiCache allows 0 to 5"
        );
        assert_eq!(
            refused(json!({"NumCacheClusters": 7})),
            "Resources.G.Properties.NumCacheClusters: 7 is out of range; ElastiCache allows 1 to 6"
        );
        assert_eq!(
            refused(json!({"NumCacheClusters": -1})),
            "Resources.G.Properties.NumCacheClusters: `-1` is not a whole number; ElastiCache allows 1 to 6"
        );
        assert_eq!(
            refused(
                json!({"NodeGroupConfiguration": [{"Slots": "0-100"}, {"Slots": "200-16383"}]})
            ),
            "Resources.G.Properties.NodeGroupConfiguration: slot 101 is in no node group; the Slots must cover 0-16383"
        );
        assert_eq!(
            refused(json!({"NodeGroupConfiguration": [{"Slots": "0-x"}, {}]})),
            "Resources.G.Properties.NodeGroupConfiguration[0].Slots: `0-x` is not startkey-endkey within 0-16383"
        );
        assert_eq!(
            refused(json!({"NumNodeGroups": 2, "NodeGroupConfiguration": [{}]})),
            "Resources.G.Properties: NumNodeGroups is 2 but NodeGroupConfiguration lists 1 node group(s); make them agree"
        );
    }

    #[test]
    fn cluster_nodes_lines_are_read() {
        let nodes = parse_nodes(
            "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5461\nb2 127.0.0.1:7002@17002,host slave a1 0 1 1 connected\n",
        );
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].slots, ["0-5461"]);
        assert!(nodes[0].has("myself"));
        assert_eq!(nodes[1].primary.as_deref(), Some("a1"));
        assert!(nodes[1].slots.is_empty());
    }
}
