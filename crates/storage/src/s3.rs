//! A repository in an S3-compatible object store (AWS S3, MinIO, Garage, Cloudflare R2,
//! Backblaze B2), through the Apache Arrow project's `object_store` crate.
//!
//! Layout under `s3://BUCKET/PREFIX/`: the same as a local directory (`config`, `keys/<id>`,
//! `index/<id>`, `points/<id>`, `packs/<2 hex>/<id>`), so a local repository copied with any
//! S3 tool is a valid S3 repository and the other way round.
//!
//! - **Atomic writes.** Every object is uploaded by one `PUT` (or, above
//!   [`S3Options::multipart_threshold`], one multipart upload completed by a single request):
//!   S3 makes an object visible whole or not at all, so an interrupted upload never leaves a
//!   prefix under a real name. Nothing relies on `If-None-Match` or `If-Match` (Garage ignores
//!   both): names are content hashes, so a repeated write stores the same bytes again.
//! - **Memory.** An object being created is held in memory until `finish` (its name is the hash
//!   of its content, and S3 needs the name before the first byte). lifeboat's largest objects
//!   are packs, bounded by `PACK_TARGET` plus one block (about 21 MiB); one is in flight.
//! - **Network faults.** `object_store` retries 5xx answers, resets and timeouts with
//!   exponential backoff and jitter ([`S3Options::retries`] times, at most
//!   [`S3Options::retry_timeout`] in all); what is left is reported as
//!   [`StorageError::Remote`], retryable or not. Permanent refusals (403, no such bucket) are
//!   [`StorageError::Unavailable`] with the cause and a hint.
//! - **Request economy.** Every request is counted ([`Storage::requests`]); listings are paged
//!   by S3 (1,000 keys a page).
//!
//! The crate is async; this type owns a small tokio runtime and blocks on it, so callers (the
//! chunk writer's packer thread, the parallel restore's workers) stay plain threads.
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use lifeboat_core::{
    ListEntry, ObjectKind, ObjectWriter, RequestCounter, RequestStats, Storage, StorageError,
    StorageResult,
};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

/// Where an S3 repository is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the repository inside the bucket (no leading or trailing `/`; may be
    /// empty).
    pub prefix: String,
    /// Endpoint URL for non-AWS stores (`http://127.0.0.1:3900`, `https://<account>.r2.cloudflarestorage.com`).
    /// `None`: AWS, or `AWS_ENDPOINT_URL` from the environment.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unset; Garage wants `garage`, R2 `auto`).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO, Garage and most
    /// self-hosted stores need. `false`: virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Access key id; `None`: from the environment (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key; `None`: from the environment (`AWS_SECRET_ACCESS_KEY`). Never
    /// printed.
    pub secret_access_key: Option<String>,
    /// Retries of a request that failed transiently (5xx, reset, timeout).
    pub retries: usize,
    /// Upper bound on the time spent retrying one request.
    pub retry_timeout: Duration,
    /// Timeout of one request (connect to last byte).
    pub request_timeout: Duration,
    /// Objects larger than this go up as a multipart upload.
    pub multipart_threshold: usize,
    /// Size of each part of a multipart upload (S3's minimum is 5 MiB).
    pub part_size: usize,
}

impl S3Options {
    /// Options for `bucket`/`prefix` with the defaults: path-style addressing, 5 retries within
    /// 2 minutes, 5-minute requests, multipart above 64 MiB in 16 MiB parts.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> S3Options {
        S3Options {
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            retries: 5,
            retry_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(300),
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
        }
    }
}

/// A repository in an S3 bucket. See the module documentation.
pub struct S3Storage {
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
    opts: S3Options,
    counter: RequestCounter,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Connects lazily: nothing is sent until the first request, so a wrong endpoint or
    /// credentials show up at the first list or read, with the store's answer.
    pub fn new(opts: S3Options) -> StorageResult<S3Storage> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&opts.bucket)
            .with_virtual_hosted_style_request(!opts.path_style)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(15),
                    base: 2.0,
                },
                max_retries: opts.retries,
                retry_timeout: opts.retry_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(15))
                    .with_timeout(opts.request_timeout),
            );
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        b = b.with_region(opts.region.as_deref().unwrap_or("us-east-1"));
        if let Some(k) = &opts.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &opts.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store = b.build().map_err(|e| StorageError::Unavailable {
            message: format!("S3 destination s3://{}: {e}", opts.bucket),
        })?;
        let rt = crate::client_runtime("s3")?;
        Ok(S3Storage {
            store: Arc::new(store),
            rt,
            opts,
            counter: RequestCounter::default(),
        })
    }

    /// `rel` (a `/`-separated path from [`ObjectKind`]) under the prefix.
    fn under_prefix(&self, rel: &str) -> String {
        match (self.opts.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => self.opts.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.opts.prefix),
        }
    }

    /// The object's key: its layout path (FORMAT.md §1) under the prefix.
    fn key(&self, kind: ObjectKind, name: &str) -> String {
        self.under_prefix(&kind.object_path(name))
    }

    fn path(&self, kind: ObjectKind, name: &str) -> StorePath {
        StorePath::from(self.key(kind, name))
    }

    fn describe(&self, kind: ObjectKind, name: &str) -> String {
        let url = format!("s3://{}/{}", self.opts.bucket, self.key(kind, name));
        match kind {
            ObjectKind::Config => format!("config ({url})"),
            _ => format!("{kind} {name} ({url})"),
        }
    }

    /// Maps an `object_store` error to the storage contract, naming the object and the
    /// store's own error code.
    fn map_err(&self, what: String, e: object_store::Error) -> StorageError {
        let (status, code) = http_details(&e);
        let bucket = &self.opts.bucket;
        match (&e, code.as_deref()) {
            (_, Some("NoSuchBucket")) => StorageError::Unavailable {
                message: format!(
                    "S3 bucket {bucket:?} does not exist at {} (NoSuchBucket); create it, or fix `bucket`/`endpoint`",
                    self.endpoint()
                ),
            },
            (object_store::Error::NotFound { .. }, _) => StorageError::NotFound { what },
            (
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
                code,
            ) => StorageError::Unavailable {
                message: format!(
                    "S3 refused access to {what}: {} ({}); check the access key id and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the repository's credentials) and the bucket policy",
                    code.unwrap_or("access denied"),
                    status.map_or("403".to_string(), |s| s.to_string()),
                ),
            },
            _ => StorageError::Remote {
                what,
                message: one_line(&e),
                // object_store already retried transient failures; what reaches here is
                // worth another attempt later only if it was a server or network failure.
                retryable: status.is_none_or(|s| s >= 500),
            },
        }
    }

    fn endpoint(&self) -> String {
        self.opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .unwrap_or_else(|| "AWS".into())
    }

    fn put(&self, kind: ObjectKind, name: &str, data: Vec<u8>) -> StorageResult<()> {
        let path = self.path(kind, name);
        let what = || self.describe(kind, name);
        if data.len() <= self.opts.multipart_threshold {
            self.counter.put(1);
            self.rt
                .block_on(self.store.put(&path, PutPayload::from(data)))
                .map_err(|e| self.map_err(what(), e))?;
            return Ok(());
        }
        // Multipart: create, parts, complete. The object appears only at `complete`; on any
        // error the upload is aborted so no parts are left billed.
        self.counter.put(1);
        let mut up = self
            .rt
            .block_on(self.store.put_multipart(&path))
            .map_err(|e| self.map_err(what(), e))?;
        let bytes = bytes::Bytes::from(data);
        let res = (|| {
            let mut off = 0;
            while off < bytes.len() {
                let end = (off + self.opts.part_size).min(bytes.len());
                self.counter.put(1);
                self.rt
                    .block_on(up.put_part(PutPayload::from(bytes.slice(off..end))))
                    .map_err(|e| self.map_err(what(), e))?;
                off = end;
            }
            self.counter.put(1);
            self.rt
                .block_on(up.complete())
                .map_err(|e| self.map_err(what(), e))
        })();
        if res.is_err() {
            self.counter.delete(1);
            let _ = self.rt.block_on(up.abort());
        }
        res.map(|_| ())
    }

    fn get_range(&self, kind: ObjectKind, name: &str, r: Range<u64>) -> StorageResult<Vec<u8>> {
        let what = self.describe(kind, name);
        let wanted = r.end - r.start;
        // An empty range: S3 answers 416, so ask for the size instead.
        if wanted == 0 {
            let size = self.head(kind, name)?;
            if r.end > size {
                return Err(StorageError::Truncated {
                    what,
                    size,
                    wanted_end: r.end,
                });
            }
            return Ok(Vec::new());
        }
        self.counter.get(1);
        match self
            .rt
            .block_on(self.store.get_range(&self.path(kind, name), r.clone()))
        {
            Ok(b) if b.len() as u64 == wanted => Ok(b.into()),
            Ok(b) => Err(StorageError::Truncated {
                what,
                size: r.start + b.len() as u64,
                wanted_end: r.end,
            }),
            Err(e) => {
                let err = self.map_err(what.clone(), e);
                if matches!(err, StorageError::Remote { .. }) {
                    // A range past the end is refused (416) or reported as a short answer:
                    // if the object is shorter than asked, say so.
                    if let Ok(size) = self.head(kind, name) {
                        if r.end > size {
                            return Err(StorageError::Truncated {
                                what,
                                size,
                                wanted_end: r.end,
                            });
                        }
                    }
                }
                Err(err)
            }
        }
    }

    fn head(&self, kind: ObjectKind, name: &str) -> StorageResult<u64> {
        self.counter.head(1);
        let meta = self
            .rt
            .block_on(self.store.head(&self.path(kind, name)))
            .map_err(|e| self.map_err(self.describe(kind, name), e))?;
        Ok(meta.size)
    }
}

/// HTTP status and S3 error code (`NoSuchBucket`, `SignatureDoesNotMatch`, ...) of an
/// `object_store` error, when the store answered. `object_store` keeps its request error
/// type private, so they are read from the error text it documents ("Server returned
/// non-2xx status code: 404 Not Found: <?xml ...><Code>NoSuchBucket</Code>...").
fn http_details(e: &object_store::Error) -> (Option<u16>, Option<String>) {
    let text = chain(e);
    let status = ["status code: ", "error response: "].iter().find_map(|m| {
        let at = text.find(m)? + m.len();
        text[at..].get(..3)?.parse::<u16>().ok()
    });
    let code = text.find("<Code>").and_then(|start| {
        let start = start + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(text[start..end].to_string())
    });
    (status, code)
}

/// An error and its causes, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// The error and its causes on one line, without the request URL's query (which may hold a
/// signature) and without XML bodies.
fn one_line(e: &dyn std::error::Error) -> String {
    let s = chain(e).replace('\n', " ");
    let s = s.split("<?xml").next().unwrap_or("").trim_end();
    match s.find('?') {
        Some(q) => {
            let rest = &s[q..];
            let cut = rest.find(' ').map_or(s.len(), |sp| q + sp);
            format!("{}{}", &s[..q], &s[cut..])
        }
        None => s.to_string(),
    }
}

/// An object being created: held in memory (see the module documentation), uploaded whole at
/// `finish`.
struct S3Writer<'s> {
    storage: &'s S3Storage,
    kind: ObjectKind,
    buf: Vec<u8>,
}

impl ObjectWriter for S3Writer<'_> {
    fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>, name: &str) -> StorageResult<()> {
        let S3Writer { storage, kind, buf } = *self;
        storage.put(kind, name, buf)
    }
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        let mut s = format!("s3://{}/{}", self.opts.bucket, self.opts.prefix);
        if let Some(e) = &self.opts.endpoint {
            s.push_str(&format!(" at {e}"));
        }
        s
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        if kind == ObjectKind::Config {
            return match self.head(kind, "config") {
                Ok(size) => Ok(vec![ListEntry {
                    name: "config".into(),
                    size,
                }]),
                Err(StorageError::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        // The kind's top directory; listings are recursive, so this covers fan-out (packs).
        let dir = StorePath::from(self.under_prefix(kind.dir()));
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&dir)).try_collect())
            .map_err(|e| self.map_err(format!("{kind} listing of {dir}"), e))?;
        // S3 pages listings at 1,000 keys.
        self.counter.list(1 + metas.len() as u64 / 1000);
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                (!name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then_some(ListEntry { name, size: m.size })
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let what = || self.describe(kind, name);
        self.counter.get(1);
        self.rt
            .block_on(async {
                let r = self.store.get(&self.path(kind, name)).await?;
                // Refused from the response's size, before its body is read.
                if let Err(e) = kind.check_size(what(), r.meta.size) {
                    return Ok(Err(e));
                }
                r.bytes().await.map(|b| Ok(b.into()))
            })
            .map_err(|e| self.map_err(what(), e))?
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        self.get_range(kind, name, offset..offset.saturating_add(len))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.put(kind, name, data.to_vec())
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.counter.delete(1);
        self.rt
            .block_on(self.store.delete(&self.path(kind, name)))
            .map_err(|e| self.map_err(self.describe(kind, name), e))
    }

    fn create(&self, kind: ObjectKind) -> StorageResult<Box<dyn ObjectWriter + '_>> {
        Ok(Box::new(S3Writer {
            storage: self,
            kind,
            buf: Vec::new(),
        }))
    }

    fn requests(&self) -> RequestStats {
        self.counter.stats()
    }
}
