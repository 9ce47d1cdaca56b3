//! What the local target has built in a run, kept in the run directory.
//!
//! A resumed run is a new `runbook` process: it learns which stacks, groups, servers and
//! snapshots earlier steps made from `local-state.json`, written atomically (temporary
//! file, fsync, rename) after every change, so a crash leaves either the old or the new
//! state, never half of one. Whether a recorded server still runs is always checked
//! against the live process, never assumed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::server::Engine;

/// The file name of the state in the run directory.
pub const FILE: &str = "local-state.json";

/// Everything the local target made in one run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub stacks: BTreeMap<String, Stack>,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    #[serde(default)]
    pub snapshots: BTreeMap<String, Snapshot>,
    /// What a serverless cache has beyond its group (same name in `groups`).
    #[serde(default)]
    pub serverless: BTreeMap<String, Serverless>,
}

/// A serverless cache's own state: its version and its migration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Serverless {
    pub major_engine_version: String,
    /// The source PrepareMigration named, `host:port` as the servers reach it.
    pub prepared_source: Option<String>,
    /// `prepared`, `syncing`, `stopped`, `completed`, or empty.
    pub migration_status: String,
}

/// A deployed stack: its computed outputs and how each resource was rehearsed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stack {
    pub template: PathBuf,
    pub outputs: BTreeMap<String, String>,
    pub resources: Vec<StackResource>,
}

/// One resource of a stack.
#[derive(Debug, Serialize, Deserialize)]
pub struct StackResource {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `process` (real servers) or `simulated` (recorded only).
    pub local: String,
    pub physical_id: String,
}

/// What a group stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// An ElastiCache replication group.
    ReplicationGroup,
    /// A self-hosted server on an EC2 instance (a migration source).
    Instance,
    /// An ElastiCache Serverless cache: one cluster-mode node owning every slot.
    Serverless,
}

/// A set of servers that act as one replication group (or one self-hosted server).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub kind: GroupKind,
    /// The stack that made it, if any (a group restored from a snapshot has none).
    pub stack: Option<String>,
    /// The engine version the template or the runbook asked for.
    pub requested_version: Option<String>,
    /// The node type the template or the runbook asked for (a label: a local server has
    /// no instance size).
    #[serde(default)]
    pub node_type: Option<String>,
    pub multi_az: bool,
    /// In-transit encryption: the nodes serve TLS only.
    pub transit_encryption: bool,
    /// AUTH: the nodes require the token kept in the run directory's `secrets` folder.
    #[serde(default)]
    pub auth: bool,
    /// Cluster mode: the nodes run `--cluster-enabled yes` and split the slots into `shards`.
    #[serde(default)]
    pub cluster_mode: bool,
    /// The node groups of a cluster, in order (empty without cluster mode: one shard).
    #[serde(default)]
    pub shards: Vec<Shard>,
    /// The port the configuration endpoint answers on (cluster mode).
    #[serde(default)]
    pub configuration_port: Option<u16>,
    /// By shard, and within a shard its primary first.
    pub nodes: Vec<Node>,
    /// The source an online migration replicates from, while it runs.
    pub migration: Option<Migration>,
    /// The last migration that was completed, so a resumed `complete` knows it is done.
    pub completed_migration: Option<Migration>,
}

impl Group {
    pub fn primary(&self) -> &Node {
        &self.nodes[0]
    }

    /// The indices of the nodes of shard `shard`, its primary first.
    pub fn shard_nodes(&self, shard: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].shard == shard)
            .collect()
    }

    /// The index of the primary of node `index`'s shard.
    pub fn primary_of(&self, index: usize) -> usize {
        self.shard_nodes(self.nodes[index].shard)[0]
    }

    /// How many shards the group has (one without cluster mode).
    pub fn shard_count(&self) -> usize {
        self.shards.len().max(1)
    }

    /// Whether its nodes run in cluster mode right now: a cluster that migrates runs its
    /// nodes as plain replicas of the source's shards until the migration completes.
    pub fn runs_clustered(&self) -> bool {
        self.cluster_mode && self.migration.is_none()
    }
}

/// One node group of a cluster: its id and the hash slots it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// ElastiCache's four-digit node group id (`0001`, …).
    pub id: String,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Shard {
    /// The slots as ElastiCache writes them: `0-5461`, ranges joined by commas.
    pub fn slots_text(&self) -> String {
        slots_text(&self.slots)
    }
}

/// Inclusive slot ranges as ElastiCache writes them (`0-5461,7000-7001`).
pub fn slots_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One server of a group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// The index of its shard in [`Group::shards`] (0 without cluster mode).
    #[serde(default)]
    pub shard: usize,
    pub engine: Engine,
    /// The node type it was last started as.
    #[serde(default)]
    pub node_type: Option<String>,
    pub port: u16,
    pub pid: u32,
    pub dir: PathBuf,
}

/// An online migration: the group's primary replicates from `source` (`host:port`); in a
/// cluster, the primary of each shard from the source's shard that owns the same slots.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Migration {
    pub source: String,
    #[serde(default)]
    pub forced: bool,
    /// `host:port` of the source primary each shard replicates from, by shard (empty
    /// without cluster mode: the one shard replicates from `source`).
    #[serde(default)]
    pub shard_sources: Vec<String>,
}

impl Migration {
    /// A migration of one shard from `source`.
    pub fn of(source: String) -> Migration {
        Migration {
            source,
            forced: false,
            shard_sources: Vec::new(),
        }
    }

    /// Where shard `shard` replicates from.
    pub fn source_of(&self, shard: usize) -> &str {
        self.shard_sources.get(shard).unwrap_or(&self.source)
    }
}

/// An RDB file taken from a group (from a cluster: one per shard).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub group: String,
    pub engine: Engine,
    pub engine_version: String,
    /// The RDB file (of the first shard, for a cluster).
    pub file: PathBuf,
    /// A cluster's shards, each with its own RDB file (empty without cluster mode).
    #[serde(default)]
    pub shards: Vec<SnapshotShard>,
}

/// The part of a cluster's snapshot that one shard wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotShard {
    pub shard: Shard,
    pub file: PathBuf,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the local state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local state {path} is damaged")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the local state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl State {
    /// The state of the run in `run_dir` (empty when nothing was made yet).
    pub fn load(run_dir: &Path) -> Result<State, StateError> {
        let path = run_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, run_dir: &Path) -> Result<(), StateError> {
        let path = run_dir.join(FILE);
        let tmp = run_dir.join(format!("{FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(run_dir)?;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(run_dir)?.sync_all()
        };
        write().map_err(|source| StateError::Write {
            path: path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::load(dir.path()).unwrap().groups.is_empty());
        let mut state = State::default();
        state.snapshots.insert(
            "s1".into(),
            Snapshot {
                group: "g".into(),
                engine: Engine::Redis,
                engine_version: "7.0.15".into(),
                file: "x.rdb".into(),
                shards: Vec::new(),
            },
        );
        state.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap();
        assert_eq!(back.snapshots["s1"].engine, Engine::Redis);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(StateError::Parse { .. })
        ));
    }
}
