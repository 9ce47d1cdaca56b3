//! What ElastiCache needs from an S3 bucket before it can export a snapshot into it or
//! seed a group from its RDB files, read from S3 itself: the bucket's region, and a grant
//! to ElastiCache — the ACL grant to its canonical user (older regions) or a bucket policy
//! for its `*.elasticache-snapshot.amazonaws.com` service principal (opt-in regions).
//!
//! ElastiCache would refuse a wrong bucket too, but only after the snapshot was copied
//! and the step had waited; a preflight that reads the same facts fails in a second,
//! before anything changes.

use aws_sdk_s3::types::Permission;
use serde_json::Value;

use super::sdk_error;
use crate::actions::ActionError;

/// ElastiCache's canonical user id in the regions that take ACL grants (AWS's "Grant
/// ElastiCache access to your Amazon S3 bucket").
pub const ELASTICACHE_CANONICAL_ID: &str =
    "540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353";

/// The ACL permissions an export needs on the bucket (List, Write, Read bucket permissions).
const EXPORT_ACL: [Permission; 3] = [Permission::Read, Permission::Write, Permission::ReadAcp];

/// What ElastiCache does with the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use<'a> {
    /// Writes snapshot files into it (CopySnapshot, ExportServerlessCacheSnapshot).
    Export,
    /// Reads this RDB file from it (SnapshotArns, SnapshotArnsToRestore).
    Seed(&'a str),
}

impl Use<'_> {
    /// The policy action ElastiCache's service principal must be allowed.
    fn action(self) -> &'static str {
        match self {
            Use::Export => "s3:PutObject",
            Use::Seed(_) => "s3:GetObject",
        }
    }
}

/// The bucket's region (GetBucketLocation; an empty constraint is us-east-1, `EU` is
/// eu-west-1), or an error saying the bucket is missing or unreadable.
pub async fn region(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String, ActionError> {
    let out = s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| match e.as_service_error().and_then(|s| s.meta().code()) {
            Some("NoSuchBucket") => ActionError::fatal(format!(
                "the bucket s3://{bucket} does not exist: create it in the snapshot's region first"
            )),
            _ => sdk_error("s3:GetBucketLocation", e),
        })?;
    Ok(
        match out.location_constraint().map(|c| c.as_str()).unwrap_or("") {
            "" => "us-east-1".to_string(),
            "EU" => "eu-west-1".to_string(),
            other => other.to_string(),
        },
    )
}

/// How the bucket grants ElastiCache what `usage` needs, or why it does not: the ACL's
/// grants to ElastiCache's canonical user (the bucket's for an export, the file's for a
/// seed, as AWS's guides set them), then the bucket policy.
pub async fn grant(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    usage: Use<'_>,
) -> Result<Result<String, String>, ActionError> {
    let grants = match usage {
        Use::Export => {
            s3.get_bucket_acl()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| sdk_error("s3:GetBucketAcl", e))?
                .grants
        }
        Use::Seed(key) => {
            s3.get_object_acl()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| sdk_error("s3:GetObjectAcl", e))?
                .grants
        }
    };
    let granted: Vec<Permission> = grants
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.grantee().and_then(|g| g.id()) == Some(ELASTICACHE_CANONICAL_ID))
        .filter_map(|g| g.permission)
        .collect();
    let acl_ok = granted.contains(&Permission::FullControl)
        || match usage {
            Use::Export => EXPORT_ACL.iter().all(|p| granted.contains(p)),
            Use::Seed(_) => granted.contains(&Permission::Read),
        };
    if acl_ok {
        return Ok(Ok(match usage {
            Use::Export => "the bucket ACL grants ElastiCache's canonical user access".to_string(),
            Use::Seed(key) => format!("the ACL of {key} grants ElastiCache's canonical user READ"),
        }));
    }
    let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => out.policy().map(str::to_string),
        Err(e)
            if e.as_service_error().and_then(|s| s.meta().code()) == Some("NoSuchBucketPolicy") =>
        {
            None
        }
        Err(e) => return Err(sdk_error("s3:GetBucketPolicy", e)),
    };
    if policy.as_deref().is_some_and(|p| allows(p, usage.action())) {
        return Ok(Ok(format!(
            "the bucket policy allows ElastiCache's service principal {}",
            usage.action()
        )));
    }
    let (what, acl) = match usage {
        Use::Export => (
            format!("s3://{bucket}"),
            "READ, WRITE and READ_ACP in its ACL",
        ),
        Use::Seed(key) => (format!("s3://{bucket}/{key}"), "READ in its object ACL"),
    };
    Ok(Err(format!(
        "{what} grants ElastiCache neither {acl} (canonical user {ELASTICACHE_CANONICAL_ID}) nor {} in the bucket policy (principal REGION.elasticache-snapshot.amazonaws.com): add one (docs/aws-permissions.md)",
        usage.action()
    )))
}

/// Whether the object exists (HeadObject).
pub async fn object_exists(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<bool, ActionError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) => Err(sdk_error("s3:HeadObject", e)),
    }
}

/// Whether a bucket policy has an `Allow` statement for an ElastiCache snapshot service
/// principal with `action` (itself, `s3:*` or `*`).
fn allows(policy: &str, action: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let statements = match &doc["Statement"] {
        Value::Array(all) => all.iter().collect(),
        one @ Value::Object(_) => vec![one],
        _ => Vec::new(),
    };
    statements.into_iter().any(|s| {
        s["Effect"] == "Allow"
            && strings(&s["Principal"]["Service"])
                .iter()
                .any(|p| p.ends_with("elasticache-snapshot.amazonaws.com"))
            && strings(&s["Action"])
                .iter()
                .any(|a| *a == action || *a == "s3:*" || *a == "*")
    })
}

/// A policy field that is one string or a list of them.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(one) => vec![one.as_str()],
        Value::Array(all) => all.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::allows;

    #[test]
    fn a_policy_allows_only_an_allow_statement_for_elasticache_with_the_action() {
        let policy = |effect: &str, service: &str, action: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{{"Service":"{service}"}},"Action":{action},"Resource":"arn:aws:s3:::b/*"}}]}}"#
            )
        };
        let ec = "ap-east-1.elasticache-snapshot.amazonaws.com";
        let cases = [
            (
                policy("Allow", ec, r#"["s3:PutObject","s3:GetObject"]"#),
                true,
            ),
            (policy("Allow", ec, r#""s3:*""#), true),
            (policy("Deny", ec, r#""s3:PutObject""#), false),
            (
                policy("Allow", "ec2.amazonaws.com", r#""s3:PutObject""#),
                false,
            ),
            (policy("Allow", ec, r#""s3:GetObject""#), false),
            ("not json".to_string(), false),
        ];
        let got: Vec<bool> = cases
            .iter()
            .map(|(p, _)| allows(p, "s3:PutObject"))
            .collect();
        let want: Vec<bool> = cases.iter().map(|(_, ok)| *ok).collect();
        assert_eq!(got, want);
    }
}
