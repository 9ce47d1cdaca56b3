//! Waiting for a replica target before a re-check, so that a key written just before the
//! first pass has had the time to arrive and is not reported as a mismatch.

use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::sides::Sides;
use super::{Side, VerifyError, VerifyOptions};

/// A `key:value` field of an `INFO` section.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.trim_end().split_once(':')?;
        (k == name).then_some(v)
    })
}

async fn info(sides: &Sides, side: Side, shard: usize) -> Result<String, VerifyError> {
    sides
        .call(side, shard, &[b"INFO", b"replication"], |r| r.text())
        .await
}

/// When the target replicates, waits until it has processed the source's replication
/// offset as it is now (or `catch_up_timeout` passes); otherwise pauses `recheck_delay`.
/// Shard `i` of the target replicates from shard `i` of the source, as in an online
/// migration of a cluster; each pair is waited for in turn.
pub(super) async fn settle(sides: &Sides, opts: &VerifyOptions) -> Result<(), VerifyError> {
    let pairs = sides.src.nodes.len().min(sides.dst.nodes.len());
    let mut waited = false;
    for shard in 0..pairs {
        waited |= settle_shard(sides, opts, shard).await?;
    }
    if !waited {
        sleep(opts.recheck_delay).await;
    }
    Ok(())
}

/// Waits for shard `shard` of a replicating target; false when it does not replicate.
async fn settle_shard(
    sides: &Sides,
    opts: &VerifyOptions,
    shard: usize,
) -> Result<bool, VerifyError> {
    let target = info(sides, Side::Target, shard).await?;
    let role = field(&target, "role").unwrap_or("");
    if role != "slave" && role != "replica" {
        return Ok(false);
    }
    let source = info(sides, Side::Source, shard).await?;
    let Some(wanted) = field(&source, "master_repl_offset").and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(false);
    };
    let deadline = Instant::now() + opts.catch_up_timeout;
    loop {
        let target = info(sides, Side::Target, shard).await?;
        let reached = field(&target, "slave_repl_offset")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1);
        if reached >= wanted || Instant::now() >= deadline {
            return Ok(true);
        }
        sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn reads_info_fields() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nslave_repl_offset:1234\r\n";
        assert_eq!(field(info, "role"), Some("slave"));
        assert_eq!(field(info, "slave_repl_offset"), Some("1234"));
        assert_eq!(field(info, "master_repl_offset"), None);
    }
}
