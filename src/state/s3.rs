//! State on S3: `--state-dir s3://bucket/prefix` keeps the run folders of a team in one
//! place, as Terraform's S3 backend keeps its state.
//!
//! The code that reads and writes run folders stays local: each machine keeps a working copy
//! (under its cache dir, one per bucket and prefix) and this module moves files between it
//! and S3. A run's objects are pulled before `runs`, `show`, `report` and `resume` read
//! them; a driving process pushes every journal line before the run moves on, with a write
//! conditional on the ETag of the journal it last wrote (`If-Match`, `If-None-Match: *` for
//! the first), so lines stay in order and a second writer is refused (412) instead of mixing
//! its lines in. The run lock is an object too ([`lease`]). Only the files of a run's story
//! travel — the runbook copy, `run.json`, the journal, probe data, step output, reports —
//! never a rehearsal's local servers or their state.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;

pub mod lease;

use crate::journal::{Event, Mirror, Record};

/// `s3://bucket/prefix`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without a leading or trailing `/`; empty for the bucket's top.
    pub prefix: String,
}

impl S3Url {
    /// `None` when `text` is not an `s3://` URL (a local folder), else the URL or why it is
    /// not one.
    pub fn parse(text: &str) -> Option<Result<S3Url, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        Some(if bucket.is_empty() {
            Err("an S3 state dir names its bucket: s3://BUCKET or s3://BUCKET/PREFIX".into())
        } else if !bucket_name(bucket) {
            Err(format!(
                "`{bucket}` is not an S3 bucket name (3 to 63 lowercase letters, digits, `.` and `-`, a letter or digit first and last)"
            ))
        } else if prefix
            .split('/')
            .any(|s| s.is_empty() && !prefix.is_empty())
            || prefix.split('/').any(|s| s == "." || s == "..")
        {
            Err(format!(
                "the prefix `{prefix}` has an empty, `.` or `..` part: give s3://BUCKET/PREFIX with parts between single `/`"
            ))
        } else {
            Ok(S3Url {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            })
        })
    }

    /// The key of `rel` (a path under the state dir, `/`-separated).
    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

fn bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Why S3 refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// A conditional write found another version than the one it was conditional on.
    #[error("{url} was written by another process meanwhile (412 Precondition Failed)")]
    Conflict { url: String },
    #[error("{operation} {url} failed: {detail}")]
    Request {
        operation: &'static str,
        url: String,
        detail: String,
    },
}

/// What a write is conditional on.
#[derive(Clone, Debug)]
pub enum Cond {
    /// Nothing: the object is replaced whatever it was.
    None,
    /// `If-None-Match: *`: only if there is no such object yet.
    Absent,
    /// `If-Match: ETAG`: only if the object is still this version.
    Is(String),
}

/// A bucket and prefix on S3, and a runtime of its own for its requests, so they can be
/// made and waited for from any thread — a journal append is a plain function call — and
/// never starve the run's own tasks.
pub struct Remote {
    pub url: S3Url,
    client: aws_sdk_s3::Client,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Remote {
    /// Clients built as every AWS call of the tool builds them (credentials chain,
    /// `--profile`, `--region`, `--endpoint-url`), and the bucket checked to be there.
    pub fn connect(url: S3Url, opts: &crate::platform::aws::AwsOptions) -> anyhow::Result<Remote> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runbook-s3")
            .enable_all()
            .build()?;
        let opts = opts.clone();
        let config = block_on(&runtime, async move {
            crate::platform::aws::clients::sdk_config(&opts).await
        })
        .map_err(|e| crate::error::invalid(format!("the state dir {url}: {e}")))?;
        let client = crate::platform::aws::Clients::from_config(&config).s3;
        let remote = Remote {
            url,
            client,
            runtime: Some(runtime),
        };
        let bucket = remote.url.bucket.clone();
        let head = remote.block(remote.client.head_bucket().bucket(&bucket).send());
        match head {
            Ok(_) => Ok(remote),
            Err(e) if status(&e) == Some(404) => Err(crate::error::invalid(format!(
                "the bucket s3://{bucket} of the state dir {} does not exist: create it, or give another --state-dir",
                remote.url
            ))),
            Err(e) => Err(anyhow::anyhow!(
                "cannot reach the state dir {}: s3:HeadBucket: {}; check the endpoint, the network and the AWS credentials, or give another --state-dir",
                remote.url,
                crate::error::chain(&e)
            )),
        }
    }

    /// Runs `fut` on this remote's runtime and waits for it.
    fn block<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(
            self.runtime.as_ref().expect("the runtime lives as long"),
            fut,
        )
    }

    fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long")
            .spawn(fut)
    }

    fn object_url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.url.bucket, self.url.key(rel))
    }

    /// The object at `rel` and its ETag, or `None` when there is none.
    pub fn get(&self, rel: &str) -> Result<Option<(Vec<u8>, String)>, S3Error> {
        let key = self.url.key(rel);
        self.block(async {
            match self
                .client
                .get_object()
                .bucket(&self.url.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(out) => {
                    let etag = out.e_tag().unwrap_or_default().to_string();
                    let body = out.body.collect().await.map_err(|e| S3Error::Request {
                        operation: "s3:GetObject",
                        url: self.object_url(rel),
                        detail: e.to_string(),
                    })?;
                    Ok(Some((body.to_vec(), etag)))
                }
                Err(e) if status(&e) == Some(404) => Ok(None),
                Err(e) => Err(self.failed("s3:GetObject", rel, &e)),
            }
        })
    }

    /// Writes `body` to `rel` if `cond` holds; the new ETag.
    pub fn put(&self, rel: &str, body: Vec<u8>, cond: &Cond) -> Result<String, S3Error> {
        self.block(self.put_async(rel, body, cond))
    }

    /// [`Remote::put`] for a task of this remote's runtime.
    async fn put_async(&self, rel: &str, body: Vec<u8>, cond: &Cond) -> Result<String, S3Error> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(self.url.key(rel))
            .body(ByteStream::from(body));
        match cond {
            Cond::None => {}
            Cond::Absent => put = put.if_none_match("*"),
            Cond::Is(etag) => put = put.if_match(etag),
        }
        match put.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
            // 412: the condition failed; 409: a concurrent conditional write won;
            // NoSuchKey: an `If-Match` on an object deleted meanwhile.
            Err(e) if matches!(status(&e), Some(412 | 409)) || no_such_key(&e) => {
                Err(S3Error::Conflict {
                    url: self.object_url(rel),
                })
            }
            Err(e) => Err(self.failed("s3:PutObject", rel, &e)),
        }
    }

    /// Deletes `rel` if it is still version `etag`.
    pub fn delete(&self, rel: &str, etag: &str) -> Result<(), S3Error> {
        let key = self.url.key(rel);
        self.block(async {
            match self
                .client
                .delete_object()
                .bucket(&self.url.bucket)
                .key(&key)
                .if_match(etag)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if matches!(status(&e), Some(412 | 404)) => Err(S3Error::Conflict {
                    url: self.object_url(rel),
                }),
                Err(e) => Err(self.failed("s3:DeleteObject", rel, &e)),
            }
        })
    }

    /// Every object under `rel` (a folder, ending in `/`): its path under the state dir and
    /// its ETag.
    pub fn list(&self, rel: &str) -> Result<Vec<(String, String)>, S3Error> {
        let prefix = self.url.key(rel);
        let strip = self.url.key("");
        self.block(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.url.bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.failed("s3:ListObjectsV2", rel, &e))?;
                for o in page.contents() {
                    if let Some(key) = o.key()
                        && let Some(path) = key.strip_prefix(strip.as_str())
                    {
                        found.push((path.to_string(), o.e_tag().unwrap_or_default().to_string()));
                    }
                }
            }
            Ok(found)
        })
    }

    fn failed<E, R>(&self, operation: &'static str, rel: &str, e: &SdkError<E, R>) -> S3Error
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        S3Error::Request {
            operation,
            url: self.object_url(rel),
            detail: crate::error::chain(e),
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // A runtime dropped inside another's task would wait for its threads and panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Waits for `fut` on `runtime` from any thread: inside a task of another multi-thread
/// runtime the wait is a blocking section, so that runtime moves its other tasks elsewhere.
fn block_on<F>(runtime: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let handle = runtime.handle().clone();
    let wait = move || {
        std::thread::scope(|s| {
            s.spawn(move || handle.block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// The HTTP status S3 answered with, if it answered.
fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An `If-Match` on an object that is gone.
fn no_such_key<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "NoSuchKey")
}

/// Whether `rel`, a path inside a run folder, is part of the run's story and travels to S3:
/// not the lock of this machine, a rehearsal's servers and their state, or temporary files.
pub fn shared(rel: &str) -> bool {
    if rel.ends_with(".tmp") {
        return false;
    }
    match rel.split_once('/') {
        Some((dir, _)) => matches!(dir, "probe" | "steps"),
        None => {
            matches!(
                rel,
                "runbook.yaml" | "run.json" | "journal.jsonl" | "journal.head"
            ) || rel.starts_with("journal.damaged-")
                || rel.starts_with("report")
                || rel.starts_with("compare-")
        }
    }
}

/// The files of a run folder that travel, by their path in it, with their size and time.
fn shared_files(run_dir: &Path) -> Vec<(String, u64, SystemTime)> {
    let mut found = Vec::new();
    let mut stack = vec![(run_dir.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = format!("{rel}{name}");
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if rel.is_empty() && !matches!(name.as_str(), "probe" | "steps") {
                    continue;
                }
                stack.push((entry.path(), format!("{path}/")));
            } else if shared(&path) {
                let time = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((path, meta.len(), time));
            }
        }
    }
    found.sort();
    found
}

/// The state dir on S3 and this machine's working copy of it.
pub struct S3State {
    pub remote: Arc<Remote>,
    /// The working copy: `runs/<id>/` as a local state dir has them.
    pub root: PathBuf,
    /// The ETag of each run's journal as last pulled, for the first conditional write.
    journals: Mutex<HashMap<String, Option<String>>>,
    /// Set once this process's lease was lost: it must not write another line.
    lost: Arc<AtomicBool>,
}

impl S3State {
    pub fn connect(url: S3Url, opts: &crate::platform::aws::AwsOptions) -> anyhow::Result<S3State> {
        let root = working_copy(&url)?;
        let remote = Remote::connect(url, opts)?;
        Ok(S3State {
            remote: Arc::new(remote),
            root,
            journals: Mutex::new(HashMap::new()),
            lost: Arc::new(AtomicBool::new(false)),
        })
    }

    fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }

    /// Every run's metadata, lease and journal, for `runs`; the ids of the runs on S3.
    pub fn pull_runs(&self) -> anyhow::Result<Vec<String>> {
        let objects = self.remote.list("runs/")?;
        let mut ids: Vec<&str> = objects
            .iter()
            .filter_map(|(rel, _)| rel.strip_prefix("runs/")?.strip_suffix("/run.json"))
            .filter(|id| super::check_run_id(id).is_ok())
            .collect();
        ids.sort();
        ids.dedup();
        let mut there = Vec::new();
        for id in ids {
            if self.pull(id, false)? {
                there.push(id.to_string());
            }
        }
        Ok(there)
    }

    /// Run `id`'s objects into the working copy (probe data, step output and reports too when
    /// `whole`); whether the run is there.
    pub fn pull(&self, id: &str, whole: bool) -> anyhow::Result<bool> {
        super::check_run_id(id).map_err(|e| crate::error::invalid(e.to_string()))?;
        let base = format!("runs/{id}/");
        // run.json first (it never changes): a run without it is not there.
        let Some((meta, _)) = self.remote.get(&format!("{base}run.json"))? else {
            return Ok(false);
        };
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        // A process of this machine that drives the run writes this copy: it is the newest.
        let Some(_reading) = crate::lock::RunLock::shared(&dir) else {
            return Ok(true);
        };
        // The lease before the journal: a run seen finished in the journal is finished,
        // and one whose lease is gone had written its last line before it let go.
        match self.remote.get(&format!("{base}{}", lease::OBJECT))? {
            Some((body, _)) => write_atomic(&dir.join(lease::OBJECT), &body)?,
            None => match std::fs::remove_file(dir.join(lease::OBJECT)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    anyhow::bail!("cannot remove {}: {e}", dir.join(lease::OBJECT).display())
                }
                _ => {}
            },
        }
        // The head before the journal, which is written first: the head may be behind
        // the journal (as after a crash between the two), never ahead of it.
        if let Some((head, _)) = self.remote.get(&format!("{base}journal.head"))? {
            write_atomic(&dir.join("journal.head"), &head)?;
        }
        let journal = self.remote.get(&format!("{base}journal.jsonl"))?;
        let etag = journal.as_ref().map(|(_, etag)| etag.clone());
        write_atomic(
            &dir.join("journal.jsonl"),
            journal.as_ref().map_or(&[][..], |(body, _)| body),
        )?;
        self.journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), etag);
        write_atomic(&dir.join("run.json"), &meta)?;
        let mut rest = vec!["runbook.yaml".to_string()];
        if whole {
            rest = self
                .remote
                .list(&base)?
                .into_iter()
                .filter_map(|(rel, _)| rel.strip_prefix(base.as_str()).map(str::to_string))
                .filter(|rel| {
                    shared(rel)
                        && !matches!(rel.as_str(), "run.json" | "journal.jsonl" | "journal.head")
                })
                .collect();
        }
        for rel in rest {
            if let Some((body, _)) = self.remote.get(&format!("{base}{rel}"))? {
                write_atomic(&dir.join(&rel), &body)?;
            }
        }
        Ok(true)
    }

    /// Publishes a new run: its `run.json` (only if no run of that id is there) and the
    /// copy of its runbook.
    pub fn publish(&self, dir: &Path, id: &str) -> anyhow::Result<()> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.join(name).display()))
        };
        self.remote
            .put(&format!("runs/{id}/run.json"), read("run.json")?, &Cond::Absent)
            .map_err(|e| match e {
                S3Error::Conflict { url } => anyhow::anyhow!(
                    "{url} exists: another machine started a run with the same id in the same minute; start the run again"
                ),
                other => other.into(),
            })?;
        self.remote.put(
            &format!("runs/{id}/runbook.yaml"),
            read("runbook.yaml")?,
            &Cond::None,
        )?;
        self.journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), None);
        Ok(())
    }

    /// The mirror of run `id`'s journal: each line goes to S3, conditional on the version
    /// pulled last (or on there being none).
    pub fn mirror(&self, dir: &Path, id: &str) -> Arc<dyn Mirror> {
        let etag = self
            .journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .flatten();
        Arc::new(JournalMirror {
            remote: self.remote.clone(),
            run: id.to_string(),
            dir: dir.to_path_buf(),
            lost: self.lost.clone(),
            state: Mutex::new(MirrorState {
                etag,
                pushed: HashMap::new(),
                warned: false,
            }),
        })
    }

    /// Takes run `id`'s lease, or says who holds it.
    pub fn lease(&self, id: &str) -> Result<lease::Lease, lease::LeaseError> {
        lease::Lease::take(self.remote.clone(), id, self.lost.clone())
    }

    /// Pushes the files of run `id` that travel and changed (reports, probe data), best effort.
    pub fn push_files(&self, dir: &Path, id: &str) -> anyhow::Result<()> {
        for (rel, _, _) in shared_files(dir) {
            if matches!(rel.as_str(), "journal.jsonl" | "journal.head" | "run.json") {
                continue;
            }
            let body = std::fs::read(dir.join(&rel))?;
            self.remote
                .put(&format!("runs/{id}/{rel}"), body, &Cond::None)?;
        }
        Ok(())
    }

    /// Pushes a repaired journal, conditional on the version pulled.
    pub fn push_repair(&self, dir: &Path, id: &str) -> anyhow::Result<()> {
        let mirror = self.mirror(dir, id);
        mirror.push_journal()?;
        self.push_files(dir, id)
    }
}

/// What a journal's mirror knows between two lines.
struct MirrorState {
    /// The ETag of the journal object this process wrote last (or pulled).
    etag: Option<String>,
    /// The size and time of each other file as pushed.
    pushed: HashMap<String, (u64, SystemTime)>,
    warned: bool,
}

struct JournalMirror {
    remote: Arc<Remote>,
    run: String,
    dir: PathBuf,
    lost: Arc<AtomicBool>,
    state: Mutex<MirrorState>,
}

impl Mirror for JournalMirror {
    fn appended(&self, record: &Record) -> std::io::Result<()> {
        self.push_journal()?;
        let step_end = matches!(
            record.event,
            Event::StepSucceeded { .. }
                | Event::StepFailed { .. }
                | Event::StepSkipped { .. }
                | Event::StepInterrupted { .. }
                | Event::StepAwaitingApproval { .. }
                | Event::RunFinished { .. }
        );
        if step_end && let Err(e) = self.push_changed() {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.warned {
                state.warned = true;
                eprintln!(
                    "warning: run {}: probe data or step output could not be copied to {}: {e:#}",
                    self.run, self.remote.url
                );
            }
        }
        Ok(())
    }

    fn push_journal(&self) -> std::io::Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(std::io::Error::other(format!(
                "the lock of run {} on {} was broken (`runbook unlock`): this process stops driving it",
                self.run, self.remote.url
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let body = std::fs::read(self.dir.join("journal.jsonl"))?;
        let cond = match &state.etag {
            Some(etag) => Cond::Is(etag.clone()),
            None => Cond::Absent,
        };
        let rel = format!("runs/{}/journal.jsonl", self.run);
        let etag = self
            .remote
            .put(&rel, body, &cond)
            .map_err(|e| match e {
                S3Error::Conflict { url } => std::io::Error::other(format!(
                    "{url} was written by another process meanwhile (412 Precondition Failed): two processes drive run {}; this one stops",
                    self.run
                )),
                other => std::io::Error::other(other),
            })?;
        state.etag = Some(etag);
        drop(state);
        if let Ok(head) = std::fs::read(self.dir.join("journal.head")) {
            self.remote
                .put(
                    &format!("runs/{}/journal.head", self.run),
                    head,
                    &Cond::None,
                )
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

impl JournalMirror {
    /// Pushes the files that changed since they were pushed last.
    fn push_changed(&self) -> Result<(), S3Error> {
        let files = shared_files(&self.dir);
        for (rel, len, time) in files {
            if matches!(rel.as_str(), "journal.jsonl" | "journal.head") {
                continue;
            }
            let unchanged = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pushed
                .get(&rel)
                == Some(&(len, time));
            if unchanged {
                continue;
            }
            let Ok(body) = std::fs::read(self.dir.join(&rel)) else {
                continue;
            };
            self.remote
                .put(&format!("runs/{}/{rel}", self.run), body, &Cond::None)?;
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pushed
                .insert(rel, (len, time));
        }
        Ok(())
    }
}

/// Where this machine keeps its working copy of `url`: the user's cache dir, one folder per
/// bucket and prefix.
pub fn working_copy(url: &S3Url) -> anyhow::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })
        .ok_or_else(|| {
            crate::error::invalid(format!(
                "no folder for the working copy of {url}: set HOME or XDG_CACHE_HOME"
            ))
        })?;
    let digest = crate::load::digest(&url.to_string());
    let short = &digest.trim_start_matches("sha256:")[..12];
    Ok(cache
        .join("runbook")
        .join("s3")
        .join(format!("{}-{short}", url.bucket)))
}

/// Replaces `path` with `body` at once, so a reader never sees half of it.
fn write_atomic(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension("pull.tmp");
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_bad_ones_refused() {
        assert!(S3Url::parse("/tmp/state").is_none());
        assert_eq!(
            S3Url::parse("s3://team-state/runbook/prod/").unwrap(),
            Ok(S3Url {
                bucket: "team-state".into(),
                prefix: "runbook/prod".into()
            })
        );
        assert_eq!(
            S3Url::parse("s3://team-state")
                .unwrap()
                .unwrap()
                .to_string(),
            "s3://team-state"
        );
        assert_eq!(
            S3Url::parse("s3://").unwrap().unwrap_err(),
            "an S3 state dir names its bucket: s3://BUCKET or s3://BUCKET/PREFIX"
        );
        assert_eq!(
            S3Url::parse("s3:///runs").unwrap().unwrap_err(),
            "an S3 state dir names its bucket: s3://BUCKET or s3://BUCKET/PREFIX"
        );
        assert_eq!(
            S3Url::parse("s3://Team_State/x").unwrap().unwrap_err(),
            "`Team_State` is not an S3 bucket name (3 to 63 lowercase letters, digits, `.` and `-`, a letter or digit first and last)"
        );
        assert_eq!(
            S3Url::parse("s3://team/a//b").unwrap().unwrap_err(),
            "the prefix `a//b` has an empty, `.` or `..` part: give s3://BUCKET/PREFIX with parts between single `/`"
        );
        assert!(S3Url::parse("s3://team/a/../b").unwrap().is_err());
    }

    #[test]
    fn only_a_runs_story_travels() {
        for rel in [
            "runbook.yaml",
            "run.json",
            "journal.jsonl",
            "journal.head",
            "journal.damaged-20261201T100000.000.jsonl",
            "report.md",
            "report-timeline.png",
            "probe/seconds.jsonl",
            "steps/hello/stdout",
        ] {
            assert!(shared(rel), "{rel}");
        }
        for rel in [
            "lock",
            "lease.json",
            "local-state.json",
            "servers/redis-1/dump.rdb",
            "snapshots/a.rdb",
            "run.json.tmp",
        ] {
            assert!(!shared(rel), "{rel}");
        }
    }
}
