//! Download a CLIPSeg model folder from the Hugging Face hub (`clipseg fetch`).
//!
//! The CLI layer reads the environment and builds a [`FetchRequest`]:
//!
//! ```text
//! endpoint = $HF_ENDPOINT or DEFAULT_ENDPOINT      token = $HF_TOKEN (empty = none)
//! clipseg fetch [--repo CIDAS/clipseg-rd64-refined] [--revision REV] --out DIR
//! ```
//!
//! What gets downloaded, from `{endpoint}/{repo}/resolve/{revision}/{file}`:
//!
//! * required: `config.json`, `preprocessor_config.json`;
//! * weights: `model.safetensors`, else `pytorch_model.bin` when the former is missing;
//! * tokenizer: `tokenizer.json`, else `vocab.json` + `merges.txt`;
//! * optional: `tokenizer_config.json`, `special_tokens_map.json`.
//!
//! Every file is first probed with a HEAD request (redirects not followed, because the
//! hub answers LFS files with a redirect to its CDN that carries the metadata):
//! `X-Linked-Etag` (sha256 of an LFS file) or `ETag` (git blob sha1 of a regular file),
//! `X-Linked-Size` and `X-Repo-Commit`. The commit from the first probe pins every later
//! request, so all files come from one snapshot even if a branch moves meanwhile.
//! Missing files and access problems are therefore reported before any big download.
//!
//! Downloads go to `FILE.part` (resumed with `Range` on the next run), are verified
//! against the hub's digest, and only then renamed. `DIR/.clipseg-fetch.json` records
//! the commit and each file's digest; files already present with the right digest are
//! not downloaded again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use ureq::http::{HeaderMap, Response};

/// Where models come from unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The checkpoint `clipseg fetch` downloads without `--repo`.
pub const DEFAULT_REPO: &str = "CIDAS/clipseg-rd64-refined";
/// The revision `clipseg fetch` downloads without `--revision`.
pub const DEFAULT_REVISION: &str = "main";
/// Name of the record written into the output folder.
pub const MANIFEST_NAME: &str = ".clipseg-fetch.json";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Limit for any single read (and for receiving response headers): a stalled
/// connection fails after this long, a slow but moving one never does.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Relative redirects a HEAD may follow (the hub uses them for renamed repos).
const MAX_HEAD_REDIRECTS: usize = 5;
const BUF_SIZE: usize = 256 * 1024;

/// What to download and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Hub base URL, e.g. [`DEFAULT_ENDPOINT`] (trailing `/` allowed).
    pub endpoint: String,
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit (`refs/pr/3` style names are allowed).
    pub revision: String,
    /// Output folder; created if needed.
    pub out: PathBuf,
    /// Sent as `Authorization: Bearer …` to the hub (never to the CDN it redirects to).
    pub token: Option<String>,
    /// Draw per-file progress bars on stderr (they stay hidden when stderr isn't a terminal).
    pub progress: bool,
}

impl FetchRequest {
    /// A request for `repo` at `revision` from [`DEFAULT_ENDPOINT`], no token, with progress bars.
    pub fn new(
        repo: impl Into<String>,
        revision: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        FetchRequest {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            repo: repo.into(),
            revision: revision.into(),
            out: out.into(),
            token: None,
            progress: true,
        }
    }
}

/// The digest a file was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// sha256 of the content (LFS files, from `X-Linked-Etag`).
    Sha256(String),
    /// git blob sha1, i.e. sha1 of `"blob {len}\0" + content` (regular files, from `ETag`).
    GitBlobSha1(String),
    /// The hub gave no digest this module understands; the file was not verified.
    Unverified,
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checksum::Sha256(h) => write!(f, "sha256:{h}"),
            Checksum::GitBlobSha1(h) => write!(f, "git-sha1:{h}"),
            Checksum::Unverified => f.write_str("unverified"),
        }
    }
}

/// One file of the fetched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// File name inside the repo and the output folder, e.g. `model.safetensors`.
    pub name: String,
    /// Where it is now.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// What it was verified against.
    pub checksum: Checksum,
    /// sha256 of the content, always computed.
    pub sha256: String,
    /// `false` when the file was already present with the right digest.
    pub downloaded: bool,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    pub repo: String,
    /// The revision as requested.
    pub revision: String,
    /// The commit the hub resolved the revision to (`X-Repo-Commit`), when it said.
    pub commit: Option<String>,
    pub out: PathBuf,
    /// The files in download order: configs, tokenizer, optional files, weights.
    pub files: Vec<FetchedFile>,
    /// `out/.clipseg-fetch.json`.
    pub manifest: PathBuf,
}

impl FetchReport {
    /// Bytes of all files in the folder that this fetch covers.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Number of files actually downloaded (not skipped).
    pub fn downloaded_count(&self) -> usize {
        self.files.iter().filter(|f| f.downloaded).count()
    }
}

/// Everything that can go wrong; each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid repo id {0:?}: expected owner/name made of letters, digits, '-', '_' and '.'")]
    InvalidRepo(String),
    #[error(
        "invalid revision {0:?}: expected a branch, tag or commit made of letters, digits, '-', '_', '.' and '/', without '..'"
    )]
    InvalidRevision(String),
    #[error("invalid hub endpoint {0:?}: expected an http:// or https:// URL")]
    InvalidEndpoint(String),
    #[error("invalid HF_TOKEN: it contains spaces or characters that can't go in an HTTP header")]
    InvalidToken,
    #[error("can't reach {endpoint} ({cause}); download the folder elsewhere and pass --model DIR")]
    Unreachable { endpoint: String, cause: String },
    #[error(
        "{repo} is gated (HTTP {status}): accept its terms at {url} and set HF_TOKEN to a token of an account with access"
    )]
    Gated {
        repo: String,
        status: u16,
        url: String,
    },
    #[error("access to {repo} denied (HTTP {status}): {hint}")]
    AccessDenied {
        repo: String,
        status: u16,
        hint: &'static str,
    },
    #[error("repository {repo} not found on {endpoint}{hint}")]
    RepoNotFound {
        repo: String,
        endpoint: String,
        hint: &'static str,
    },
    #[error("revision {revision:?} not found in {repo}")]
    RevisionNotFound { repo: String, revision: String },
    #[error("{file} not found in {repo} at revision {revision}")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error(
        "checksum mismatch for {file}: expected {algo} {expected}, got {actual}; the partial download was deleted"
    )]
    ChecksumMismatch {
        file: String,
        algo: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "download of {file} interrupted after {bytes} bytes ({cause}); run the same command again to resume"
    )]
    Interrupted {
        file: String,
        bytes: u64,
        cause: String,
    },
    #[error("HTTP {status} from {url}")]
    Http { status: u16, url: String },
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("{}: {}", .path.display(), one_line(&.source.to_string()))]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Downloads the CLIPSeg files of `req.repo` at `req.revision` into `req.out`.
pub fn fetch(req: &FetchRequest) -> Result<FetchReport, HubError> {
    validate_repo(&req.repo)?;
    validate_revision(&req.revision)?;
    let endpoint = normalize_endpoint(&req.endpoint)?;
    let auth = bearer(req.token.as_deref())?;
    let hub = Hub::new(endpoint, req.repo.clone(), req.revision.clone(), auth);

    // Probe everything first: bad repo/revision/token and missing files fail before any download.
    let rev = encode_revision(&req.revision);
    let config = hub.head_required(&rev, "config.json")?;
    let commit = config.commit.clone().filter(|c| is_hex(c, 40));
    let pinned = commit
        .clone()
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or(rev);

    let mut plan: Vec<(&'static str, Remote)> = vec![("config.json", config)];
    plan.push((
        "preprocessor_config.json",
        hub.head_required(&pinned, "preprocessor_config.json")?,
    ));
    match hub.head(&pinned, "tokenizer.json")? {
        Probe::Found(r) => plan.push(("tokenizer.json", r)),
        Probe::Missing => {
            let vocab = match hub.head(&pinned, "vocab.json")? {
                Probe::Found(r) => r,
                Probe::Missing => {
                    return Err(hub.not_found("tokenizer.json (or vocab.json + merges.txt)"));
                }
            };
            plan.push(("vocab.json", vocab));
            plan.push(("merges.txt", hub.head_required(&pinned, "merges.txt")?));
        }
    }
    for optional in ["tokenizer_config.json", "special_tokens_map.json"] {
        if let Probe::Found(r) = hub.head(&pinned, optional)? {
            plan.push((optional, r));
        }
    }
    match hub.head(&pinned, "model.safetensors")? {
        Probe::Found(r) => plan.push(("model.safetensors", r)),
        Probe::Missing => match hub.head(&pinned, "pytorch_model.bin")? {
            Probe::Found(r) => plan.push(("pytorch_model.bin", r)),
            Probe::Missing => return Err(hub.not_found("model.safetensors (or pytorch_model.bin)")),
        },
    }

    fs::create_dir_all(&req.out).map_err(io_err(&req.out))?;
    let mut files = Vec::with_capacity(plan.len());
    for (name, remote) in &plan {
        files.push(hub.fetch_file(&pinned, name, remote, &req.out, req.progress)?);
    }
    let manifest = req.out.join(MANIFEST_NAME);
    write_manifest(
        &manifest,
        &req.repo,
        &req.revision,
        commit.as_deref(),
        &files,
    )?;
    Ok(FetchReport {
        repo: req.repo.clone(),
        revision: req.revision.clone(),
        commit,
        out: req.out.clone(),
        files,
        manifest,
    })
}

// ---------------------------------------------------------------------------------------
// Validation and URLs

fn validate_repo(repo: &str) -> Result<(), HubError> {
    let bad = || HubError::InvalidRepo(repo.to_string());
    let (owner, name) = repo.split_once('/').ok_or_else(bad)?;
    for part in [owner, name] {
        let ok = (1..=96).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !part.starts_with(['-', '.'])
            && !part.ends_with(['-', '.'])
            && !part.contains("--")
            && !part.contains("..");
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn validate_revision(revision: &str) -> Result<(), HubError> {
    let ok = (1..=256).contains(&revision.len())
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !revision.contains("..")
        && !revision.contains("//")
        && !revision.starts_with('/')
        && !revision.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(HubError::InvalidRevision(revision.to_string()))
    }
}

/// `refs/pr/3` → `refs%2Fpr%2F3` (the hub wants the revision as one path segment).
fn encode_revision(revision: &str) -> String {
    revision.replace('/', "%2F")
}

fn normalize_endpoint(endpoint: &str) -> Result<String, HubError> {
    let e = endpoint.trim().trim_end_matches('/');
    let rest = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty() && !e.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(e.to_string())
        }
        _ => Err(HubError::InvalidEndpoint(endpoint.to_string())),
    }
}

fn bearer(token: Option<&str>) -> Result<Option<String>, HubError> {
    match token.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(format!("Bearer {t}"))),
        Some(_) => Err(HubError::InvalidToken),
    }
}

fn file_url(endpoint: &str, repo: &str, encoded_revision: &str, file: &str) -> String {
    format!("{endpoint}/{repo}/resolve/{encoded_revision}/{file}")
}

/// `https://host:port/some/path` → `https://host:port`.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(i) => &url[..start + i],
        None => url,
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// Talking to the hub

/// The digest the hub announced for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Sha256(String),
    GitSha1(String),
    Unknown,
}

impl Expected {
    fn from_headers(linked_etag: Option<&str>, etag: Option<&str>) -> Self {
        let norm = |e: &str| {
            e.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        };
        if let Some(linked) = linked_etag {
            // An LFS file: the linked etag is the sha256 of the content. Never fall back to
            // the plain ETag here, which may describe the pointer or the redirect.
            let l = norm(linked);
            return if is_hex(&l, 64) {
                Expected::Sha256(l)
            } else {
                Expected::Unknown
            };
        }
        match etag.map(norm) {
            Some(e) if is_hex(&e, 40) => Expected::GitSha1(e),
            Some(e) if is_hex(&e, 64) => Expected::Sha256(e),
            _ => Expected::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
struct Remote {
    expected: Expected,
    size: Option<u64>,
    commit: Option<String>,
}

enum Probe {
    Found(Remote),
    Missing,
}

struct Hub {
    agent: ureq::Agent,
    endpoint: String,
    repo: String,
    revision: String,
    auth: Option<String>,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header(headers, name).and_then(|v| v.parse().ok())
}

/// Start of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = header(headers, "content-range")?
        .strip_prefix("bytes")?
        .trim_start();
    v.split('-').next()?.trim().parse().ok()
}

impl Hub {
    fn new(endpoint: String, repo: String, revision: String, auth: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_send_request(Some(READ_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .timeout_per_write(Some(READ_TIMEOUT))
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(concat!("clipseg/", env!("CARGO_PKG_VERSION")))
            .build();
        Hub {
            agent: ureq::Agent::new_with_config(config),
            endpoint,
            repo,
            revision,
            auth,
        }
    }

    fn url(&self, rev: &str, file: &str) -> String {
        file_url(&self.endpoint, &self.repo, rev, file)
    }

    fn unreachable(&self, e: &ureq::Error) -> HubError {
        let cause = e.to_string();
        let cause = cause.strip_prefix("io: ").unwrap_or(&cause);
        HubError::Unreachable {
            endpoint: self.endpoint.clone(),
            cause: one_line(cause),
        }
    }

    fn not_found(&self, file: &str) -> HubError {
        HubError::FileNotFound {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            file: file.to_string(),
        }
    }

    /// Error for a status that is neither success nor "this file is missing".
    fn status_error(&self, status: u16, headers: &HeaderMap, file: &str, url: &str) -> HubError {
        let repo = self.repo.clone();
        let has_token = self.auth.is_some();
        match (status, header(headers, "x-error-code").unwrap_or("")) {
            (_, "RepoNotFound") => HubError::RepoNotFound {
                repo,
                endpoint: self.endpoint.clone(),
                hint: if has_token {
                    ""
                } else {
                    " (if it is private, set HF_TOKEN)"
                },
            },
            (_, "RevisionNotFound") => HubError::RevisionNotFound {
                repo,
                revision: self.revision.clone(),
            },
            (_, "GatedRepo") => HubError::Gated {
                url: format!("{}/{}", self.endpoint, repo),
                repo,
                status,
            },
            (_, "EntryNotFound") | (404, _) => self.not_found(file),
            (401, _) if has_token => HubError::AccessDenied {
                repo,
                status,
                hint: "HF_TOKEN was rejected; check that it is valid and not expired",
            },
            (403, _) if has_token => HubError::AccessDenied {
                repo,
                status,
                hint: "HF_TOKEN has no access to it; request access on the hub or use another token",
            },
            (401 | 403, _) => HubError::AccessDenied {
                repo,
                status,
                hint: "the repo is private or gated; set HF_TOKEN to a token with access",
            },
            _ => HubError::Http {
                status,
                url: url.to_string(),
            },
        }
    }

    fn request(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        range_from: u64,
    ) -> Result<Response<ureq::Body>, HubError> {
        // identity: sizes and Range offsets must refer to the stored bytes.
        let mut req = req.header("Accept-Encoding", "identity");
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth.as_str());
        }
        if range_from > 0 {
            req = req.header("Range", format!("bytes={range_from}-"));
        }
        req.call().map_err(|e| self.unreachable(&e))
    }

    /// HEAD without following the CDN redirect: its headers carry the LFS metadata.
    fn head(&self, rev: &str, file: &str) -> Result<Probe, HubError> {
        let mut url = self.url(rev, file);
        for _ in 0..=MAX_HEAD_REDIRECTS {
            let req = self.agent.head(&url).config().max_redirects(0).build();
            let resp = self.request(req, 0)?;
            let status = resp.status().as_u16();
            let h = resp.headers();
            let linked_etag = header(h, "x-linked-etag");
            if (300..400).contains(&status) && linked_etag.is_none() {
                // A relative redirect is the hub's own (renamed repo): follow it.
                if let Some(loc) = header(h, "location").filter(|l| l.starts_with('/')) {
                    url = format!("{}{loc}", origin(&url));
                    continue;
                }
            }
            let code = header(h, "x-error-code");
            if code == Some("EntryNotFound") || (status == 404 && code.is_none()) {
                return Ok(Probe::Missing);
            }
            if !(200..400).contains(&status) {
                return Err(self.status_error(status, h, file, &url));
            }
            let size = header_u64(h, "x-linked-size").or_else(|| {
                if status == 200 {
                    header_u64(h, "content-length")
                } else {
                    None
                }
            });
            return Ok(Probe::Found(Remote {
                expected: Expected::from_headers(linked_etag, header(h, "etag")),
                size,
                commit: header(h, "x-repo-commit").map(str::to_string),
            }));
        }
        Err(HubError::BadResponse {
            url,
            detail: "too many redirects".into(),
        })
    }

    fn head_required(&self, rev: &str, file: &str) -> Result<Remote, HubError> {
        match self.head(rev, file)? {
            Probe::Found(r) => Ok(r),
            Probe::Missing => Err(self.not_found(file)),
        }
    }

    /// Makes sure `out/name` holds the right bytes, downloading them if needed.
    fn fetch_file(
        &self,
        rev: &str,
        name: &str,
        remote: &Remote,
        out: &Path,
        progress: bool,
    ) -> Result<FetchedFile, HubError> {
        let path = out.join(name);
        let done = |hashed: Hashed, checksum, downloaded| FetchedFile {
            name: name.to_string(),
            path: path.clone(),
            size: hashed.size,
            checksum,
            sha256: hashed.sha256,
            downloaded,
        };
        if remote.expected != Expected::Unknown && path.is_file() {
            let hashed = hash_file(&path, matches!(remote.expected, Expected::GitSha1(_)))?;
            if let Ok(checksum) = verify(&remote.expected, &hashed) {
                return Ok(done(hashed, checksum, false));
            }
        }
        let part = out.join(format!("{name}.part"));
        let mut retried = false;
        loop {
            let resumed_from = self.download_part(rev, name, remote, &part, progress)?;
            let hashed = hash_file(&part, matches!(remote.expected, Expected::GitSha1(_)))?;
            match verify(&remote.expected, &hashed) {
                Ok(checksum) => {
                    fs::rename(&part, &path).map_err(io_err(&path))?;
                    return Ok(done(hashed, checksum, true));
                }
                Err((algo, expected, actual)) => {
                    fs::remove_file(&part).map_err(io_err(&part))?;
                    // A resumed .part may stem from another version of the file: start over once.
                    if resumed_from > 0 && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(HubError::ChecksumMismatch {
                        file: name.to_string(),
                        algo,
                        expected,
                        actual,
                    });
                }
            }
        }
    }

    /// Brings `part` up to the full file; returns the offset it resumed from (0 = fresh).
    fn download_part(
        &self,
        rev: &str,
        name: &str,
        remote: &Remote,
        part: &Path,
        progress: bool,
    ) -> Result<u64, HubError> {
        let mut offset = match fs::metadata(part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(part)(e)),
        };
        if let Some(size) = remote.size {
            if offset > size {
                fs::remove_file(part).map_err(io_err(part))?;
                offset = 0;
            } else if offset == size && size > 0 {
                return Ok(offset); // complete already, only needs verifying
            }
        }
        let url = self.url(rev, name);
        let mut resp = self.request(self.agent.get(&url), offset)?;
        if resp.status().as_u16() == 416 && offset > 0 {
            // The server can't serve that range: the .part is stale, start over.
            fs::remove_file(part).map_err(io_err(part))?;
            offset = 0;
            resp = self.request(self.agent.get(&url), 0)?;
        }
        let status = resp.status().as_u16();
        let append = match status {
            206 if offset > 0 && content_range_start(resp.headers()) == Some(offset) => true,
            200 => {
                offset = 0;
                false
            }
            206 => {
                return Err(HubError::BadResponse {
                    url,
                    detail: format!("asked for bytes {offset}- but got a different range"),
                });
            }
            s if (200..300).contains(&s) => return Err(HubError::Http { status, url }),
            _ => return Err(self.status_error(status, resp.headers(), name, &url)),
        };
        let content_length = header_u64(resp.headers(), "content-length");
        let total = remote.size.or(content_length.map(|n| n + offset));

        let mut file = if append {
            OpenOptions::new().append(true).open(part)
        } else {
            File::create(part)
        }
        .map_err(io_err(part))?;
        let bar = progress_bar(name, total, offset, progress);
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; BUF_SIZE];
        let mut pos = offset;
        let interrupted = |pos: u64, cause: String| {
            bar.abandon();
            HubError::Interrupted {
                file: name.to_string(),
                bytes: pos,
                cause: one_line(&cause),
            }
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(interrupted(pos, e.to_string())),
            };
            file.write_all(&buf[..n]).map_err(io_err(part))?;
            pos += n as u64;
            bar.set_position(pos);
        }
        file.flush().map_err(io_err(part))?;
        if content_length.is_some_and(|n| pos - offset < n) || remote.size.is_some_and(|n| pos < n)
        {
            return Err(interrupted(pos, "connection closed early".to_string()));
        }
        bar.finish();
        Ok(offset)
    }
}

fn progress_bar(name: &str, total: Option<u64>, position: u64, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_position(position);
    let template = if total.is_some() {
        "{msg:24} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}"
    } else {
        "{msg:24} {bytes:>10} {binary_bytes_per_sec:>12}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

// ---------------------------------------------------------------------------------------
// Digests and the manifest

struct Hashed {
    size: u64,
    sha256: String,
    git_sha1: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of the file, plus its git blob sha1 when asked.
fn hash_file(path: &Path, git_sha1: bool) -> Result<Hashed, HubError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = git_sha1.then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        h
    });
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        sha256.update(&buf[..n]);
        if let Some(h) = sha1.as_mut() {
            h.update(&buf[..n]);
        }
    }
    Ok(Hashed {
        size,
        sha256: hex(&sha256.finalize()),
        git_sha1: sha1.map(|h| hex(&h.finalize())),
    })
}

/// git's object id of a blob with this content.
#[cfg(test)]
fn git_blob_sha1(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex(&h.finalize())
}

/// `Ok(checksum)` if the file matches, else `Err((algo, expected, actual))`.
fn verify(
    expected: &Expected,
    hashed: &Hashed,
) -> Result<Checksum, (&'static str, String, String)> {
    match expected {
        Expected::Sha256(want) if *want == hashed.sha256 => Ok(Checksum::Sha256(want.clone())),
        Expected::Sha256(want) => Err(("sha256", want.clone(), hashed.sha256.clone())),
        Expected::GitSha1(want) => match &hashed.git_sha1 {
            Some(got) if got == want => Ok(Checksum::GitBlobSha1(want.clone())),
            got => Err(("git-sha1", want.clone(), got.clone().unwrap_or_default())),
        },
        Expected::Unknown => Ok(Checksum::Unverified),
    }
}

fn write_manifest(
    path: &Path,
    repo: &str,
    revision: &str,
    commit: Option<&str>,
    files: &[FetchedFile],
) -> Result<(), HubError> {
    let entries: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|f| {
            let entry = serde_json::json!({
                "size": f.size,
                "checksum": f.checksum.to_string(),
                "sha256": f.sha256,
            });
            (f.name.clone(), entry)
        })
        .collect();
    let doc = serde_json::json!({
        "repo": repo,
        "revision": revision,
        "commit": commit,
        "files": entries,
    });
    let mut text =
        serde_json::to_string_pretty(&doc).map_err(|e| io_err(path)(io::Error::other(e)))?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::{self, JoinHandle};
    use std::time::Instant;

    const REPO: &str = "tester/fake-clipseg";
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const PR_REV: &str = "refs%2Fpr%2F3";
    const WEIGHTS_LEN: usize = 300_000;

    // ----- a tiny HTTP/1.1 hub on 127.0.0.1 -------------------------------------------

    #[derive(Clone)]
    struct FakeFile {
        body: Vec<u8>,
        lfs: bool,
    }

    #[derive(Default)]
    struct Behaviour {
        /// The first GET of the weights sends half the body, then closes the connection.
        drop_first_weights_get: bool,
        /// Serve this file with one byte flipped (the announced digest stays right).
        corrupt: Option<&'static str>,
        /// Answer 401 GatedRepo unless `Authorization: Bearer <token>`.
        token: Option<&'static str>,
        /// Redirect LFS files to this host name (same port) instead of a relative path.
        cdn_host: Option<&'static str>,
        /// Ignore `Range` headers (answer 200 with the whole body).
        no_ranges: bool,
    }

    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        range: Option<String>,
        auth: Option<String>,
        status: u16,
    }

    struct Shared {
        files: BTreeMap<String, FakeFile>,
        behaviour: Behaviour,
        log: Vec<Seen>,
        port: u16,
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        cut_at: Option<usize>,
    }

    impl Reply {
        fn new(status: u16, headers: Vec<(&str, String)>, body: Vec<u8>) -> Self {
            let headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            Reply {
                status,
                headers,
                body,
                cut_at: None,
            }
        }

        fn error(status: u16, code: &str) -> Self {
            Reply::new(
                status,
                vec![
                    ("X-Error-Code", code.to_string()),
                    ("X-Error-Message", format!("{code} (fake)")),
                ],
                format!("{{\"error\":\"{code}\"}}").into_bytes(),
            )
        }
    }

    struct FakeHub {
        endpoint: String,
        shared: Arc<Mutex<Shared>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl FakeHub {
        fn start(files: BTreeMap<String, FakeFile>, behaviour: Behaviour) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            let addr = listener.local_addr().expect("local addr");
            let endpoint = format!("http://{addr}");
            let shared = Arc::new(Mutex::new(Shared {
                files,
                behaviour,
                log: Vec::new(),
                port: addr.port(),
            }));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (shared, stop) = (shared.clone(), stop.clone());
                thread::spawn(move || serve(listener, &shared, &stop))
            };
            FakeHub {
                endpoint,
                shared,
                stop,
                thread: Some(thread),
            }
        }

        fn log(&self) -> Vec<Seen> {
            self.shared.lock().expect("server state").log.clone()
        }

        fn gets(&self) -> Vec<Seen> {
            self.log()
                .into_iter()
                .filter(|s| s.method == "GET")
                .collect()
        }

        fn request(&self, out: &Path) -> FetchRequest {
            FetchRequest {
                endpoint: self.endpoint.clone(),
                repo: REPO.to_string(),
                revision: "main".to_string(),
                out: out.to_path_buf(),
                token: None,
                progress: false,
            }
        }
    }

    impl Drop for FakeHub {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve(listener: TcpListener, shared: &Mutex<Shared>, stop: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = handle(stream, shared);
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn handle(mut stream: TcpStream, shared: &Mutex<Shared>) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf)?;
            if n == 0 || raw.len() > 64 * 1024 {
                return Ok(());
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let reply = {
            let mut s = shared.lock().expect("server state");
            let reply = route(&mut s, &method, &path, &headers);
            s.log.push(Seen {
                method: method.clone(),
                path,
                range: headers.get("range").cloned(),
                auth: headers.get("authorization").cloned(),
                status: reply.status,
            });
            reply
        };
        let reason = match reply.status {
            200 => "OK",
            206 => "Partial Content",
            302 => "Found",
            401 => "Unauthorized",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            _ => "Whatever",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            reply.body.len()
        ));
        stream.write_all(head.as_bytes())?;
        if method != "HEAD" {
            let end = reply.cut_at.unwrap_or(reply.body.len());
            stream.write_all(&reply.body[..end])?;
        }
        stream.flush()?;
        stream.shutdown(Shutdown::Both)
    }

    fn ranged(body: Vec<u8>, range: Option<&String>, mut headers: Vec<(&str, String)>) -> Reply {
        let len = body.len();
        let start = range
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'));
        match start.map(|s| s.parse::<usize>()) {
            None => Reply::new(200, headers, body),
            Some(Ok(n)) if n < len => {
                headers.push(("Content-Range", format!("bytes {n}-{}/{len}", len - 1)));
                Reply::new(206, headers, body[n..].to_vec())
            }
            Some(_) => {
                headers.push(("Content-Range", format!("bytes */{len}")));
                Reply::new(416, headers, Vec::new())
            }
        }
    }

    fn route(
        s: &mut Shared,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
    ) -> Reply {
        let range = headers.get("range").filter(|_| !s.behaviour.no_ranges);
        if let Some(name) = path.strip_prefix("/cdn/") {
            let Some(f) = s.files.get(name).filter(|f| f.lfs) else {
                return Reply::error(404, "NoSuchKey");
            };
            let mut body = f.body.clone();
            if s.behaviour.corrupt == Some(name) {
                let mid = body.len() / 2;
                body[mid] ^= 0xff;
            }
            let mut reply = ranged(
                body,
                range,
                vec![("ETag", "\"cdn-object-etag\"".to_string())],
            );
            if method == "GET" && name == "model.safetensors" && s.behaviour.drop_first_weights_get
            {
                s.behaviour.drop_first_weights_get = false;
                reply.cut_at = Some(reply.body.len() / 2);
            }
            return reply;
        }
        let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
        let [owner, name, "resolve", rev, file] = parts.as_slice() else {
            return Reply::error(404, "NotARoute");
        };
        if format!("{owner}/{name}") != REPO {
            return Reply::error(401, "RepoNotFound"); // what the hub says to anonymous callers
        }
        if ![COMMIT, "main", PR_REV].contains(rev) {
            return Reply::error(404, "RevisionNotFound");
        }
        if let Some(token) = s.behaviour.token
            && headers.get("authorization") != Some(&format!("Bearer {token}"))
        {
            return Reply::error(401, "GatedRepo");
        }
        let Some(f) = s.files.get(*file) else {
            return Reply::error(404, "EntryNotFound");
        };
        let commit = ("X-Repo-Commit", COMMIT.to_string());
        if f.lfs {
            let sha = hex(&Sha256::digest(&f.body));
            return Reply::new(
                302,
                vec![
                    (
                        "Location",
                        match s.behaviour.cdn_host {
                            Some(host) => format!("http://{host}:{}/cdn/{file}", s.port),
                            None => format!("/cdn/{file}"),
                        },
                    ),
                    ("X-Linked-Etag", format!("\"{sha}\"")),
                    ("X-Linked-Size", f.body.len().to_string()),
                    ("ETag", format!("\"{sha}\"")),
                    commit,
                ],
                Vec::new(),
            );
        }
        let etag = ("ETag", format!("\"{}\"", git_blob_sha1(&f.body)));
        let mut body = f.body.clone();
        if s.behaviour.corrupt == Some(*file) {
            body[0] ^= 0x20;
        }
        ranged(body, range, vec![etag, commit])
    }

    // ----- fixtures ---------------------------------------------------------------------

    fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    fn regular(text: &str) -> FakeFile {
        FakeFile {
            body: text.as_bytes().to_vec(),
            lfs: false,
        }
    }

    /// config, preprocessor config, tokenizer.json, tokenizer_config.json, model.safetensors;
    /// no special_tokens_map.json (optional, must be skipped quietly).
    fn base_files() -> BTreeMap<String, FakeFile> {
        let mut files = BTreeMap::new();
        files.insert(
            "config.json".into(),
            regular("{\"model_type\": \"clipseg\"}\n"),
        );
        files.insert(
            "preprocessor_config.json".into(),
            regular("{\"size\": 352}\n"),
        );
        files.insert(
            "tokenizer.json".into(),
            regular("{\"model\": {\"type\": \"BPE\"}}\n"),
        );
        files.insert(
            "tokenizer_config.json".into(),
            regular("{\"model_max_length\": 77}\n"),
        );
        let weights = FakeFile {
            body: pseudo_random(WEIGHTS_LEN, 7),
            lfs: true,
        };
        files.insert("model.safetensors".into(), weights);
        files
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = N.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!(
                "clipseg-hub-{tag}-{}-{n}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn out(&self) -> PathBuf {
            self.0.join("model")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(report: &FetchReport) -> Vec<&str> {
        report.files.iter().map(|f| f.name.as_str()).collect()
    }

    fn assert_one_line(e: &HubError) -> String {
        let msg = e.to_string();
        assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "not one line: {msg:?}"
        );
        msg
    }

    fn leftover_parts(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".part") || n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- tests --------------------------------------------------------------------------

    #[test]
    fn fetches_verifies_and_writes_manifest() {
        let files = base_files();
        let hub = FakeHub::start(files.clone(), Behaviour::default());
        let tmp = TempDir::new("full");
        let report = fetch(&hub.request(&tmp.out())).expect("fetch");

        assert_eq!(report.commit.as_deref(), Some(COMMIT));
        assert_eq!(
            names(&report),
            [
                "config.json",
                "preprocessor_config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "model.safetensors"
            ]
        );
        for f in &report.files {
            assert!(f.downloaded);
            assert_eq!(
                fs::read(tmp.out().join(&f.name)).expect("read"),
                files[&f.name].body,
                "{}",
                f.name
            );
            assert_eq!(f.size, files[&f.name].body.len() as u64);
        }
        let weights = &report.files[4];
        assert_eq!(
            weights.checksum,
            Checksum::Sha256(hex(&Sha256::digest(&files["model.safetensors"].body)))
        );
        assert_eq!(
            report.files[0].checksum,
            Checksum::GitBlobSha1(git_blob_sha1(&files["config.json"].body))
        );
        assert!(!tmp.out().join("special_tokens_map.json").exists());
        assert!(leftover_parts(&tmp.out()).is_empty());

        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(tmp.out().join(MANIFEST_NAME)).expect("manifest"))
                .expect("json");
        assert_eq!(manifest["commit"], COMMIT);
        assert_eq!(manifest["repo"], REPO);
        assert_eq!(
            manifest["files"]["model.safetensors"]["checksum"],
            weights.checksum.to_string()
        );
        assert_eq!(
            manifest["files"]["model.safetensors"]["size"],
            WEIGHTS_LEN as u64
        );
        assert!(
            manifest["files"]["config.json"]["checksum"]
                .as_str()
                .is_some_and(|c| c.starts_with("git-sha1:"))
        );

        let log = hub.log();
        // The HEAD saw the redirect's own headers instead of following it to the CDN.
        assert!(log.iter().any(|s| s.method == "HEAD"
            && s.path.ends_with("/model.safetensors")
            && s.status == 302));
        assert!(
            !log.iter()
                .any(|s| s.method == "HEAD" && s.path.starts_with("/cdn/"))
        );
        // The GET did follow it.
        assert!(
            log.iter().any(|s| s.method == "GET"
                && s.path == "/cdn/model.safetensors"
                && s.status == 200)
        );
        // The revision is resolved once, then pinned to the commit.
        assert_eq!(log[0].path, format!("/{REPO}/resolve/main/config.json"));
        assert!(log[1..].iter().all(|s| !s.path.contains("/resolve/main/")));
    }

    #[test]
    fn second_run_skips_downloads() {
        let hub = FakeHub::start(base_files(), Behaviour::default());
        let tmp = TempDir::new("skip");
        let first = fetch(&hub.request(&tmp.out())).expect("first fetch");
        assert_eq!(first.downloaded_count(), 5);
        let gets_before = hub.gets().len();

        let second = fetch(&hub.request(&tmp.out())).expect("second fetch");
        assert_eq!(second.downloaded_count(), 0);
        assert_eq!(
            hub.gets().len(),
            gets_before,
            "second run downloaded something"
        );
        assert_eq!(names(&first), names(&second));
        for (a, b) in first.files.iter().zip(&second.files) {
            assert_eq!((&a.checksum, a.size), (&b.checksum, b.size));
        }

        // A damaged file is noticed and downloaded again.
        fs::write(tmp.out().join("config.json"), b"{}").expect("damage");
        let third = fetch(&hub.request(&tmp.out())).expect("third fetch");
        let redone: Vec<&str> = third
            .files
            .iter()
            .filter(|f| f.downloaded)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(redone, ["config.json"]);
    }

    #[test]
    fn interrupted_download_resumes_from_part() {
        let files = base_files();
        let behaviour = Behaviour {
            drop_first_weights_get: true,
            ..Behaviour::default()
        };
        let hub = FakeHub::start(files.clone(), behaviour);
        let tmp = TempDir::new("resume");

        let err = fetch(&hub.request(&tmp.out())).expect_err("first fetch must be cut off");
        let msg = assert_one_line(&err);
        assert!(
            matches!(&err, HubError::Interrupted { file, .. } if file == "model.safetensors"),
            "{msg}"
        );
        let part = tmp.out().join("model.safetensors.part");
        let have = fs::metadata(&part).expect("part kept").len();
        assert!(
            have > 0 && have < WEIGHTS_LEN as u64,
            "part has {have} bytes"
        );
        assert!(!tmp.out().join("model.safetensors").exists());

        let report = fetch(&hub.request(&tmp.out())).expect("resumed fetch");
        let weights = report
            .files
            .iter()
            .find(|f| f.name == "model.safetensors")
            .expect("weights");
        assert!(weights.downloaded);
        assert_eq!(
            fs::read(tmp.out().join("model.safetensors")).expect("read"),
            files["model.safetensors"].body
        );
        assert!(!part.exists());
        let expected_range = format!("bytes={have}-");
        assert!(
            hub.gets().iter().any(|s| s.path == "/cdn/model.safetensors"
                && s.range.as_deref() == Some(expected_range.as_str())
                && s.status == 206),
            "no ranged GET in {:?}",
            hub.gets()
        );
        // The small files finished in the first run and were not fetched again.
        assert_eq!(report.downloaded_count(), 1);
    }

    #[test]
    fn server_ignoring_range_restarts_from_zero() {
        let files = base_files();
        let behaviour = Behaviour {
            drop_first_weights_get: true,
            no_ranges: true,
            ..Behaviour::default()
        };
        let hub = FakeHub::start(files.clone(), behaviour);
        let tmp = TempDir::new("norange");
        assert!(matches!(
            fetch(&hub.request(&tmp.out())),
            Err(HubError::Interrupted { .. })
        ));
        fetch(&hub.request(&tmp.out())).expect("second fetch");
        assert_eq!(
            fs::read(tmp.out().join("model.safetensors")).expect("read"),
            files["model.safetensors"].body
        );
        let cdn: Vec<(Option<String>, u16)> = hub
            .gets()
            .into_iter()
            .filter(|s| s.path == "/cdn/model.safetensors")
            .map(|s| (s.range, s.status))
            .collect();
        assert_eq!(cdn.len(), 2);
        assert!(cdn[1].0.is_some() && cdn[1].1 == 200, "{cdn:?}");
    }

    #[test]
    fn complete_part_is_verified_without_download() {
        let files = base_files();
        let hub = FakeHub::start(files.clone(), Behaviour::default());
        let tmp = TempDir::new("fullpart");
        fs::create_dir_all(tmp.out()).expect("out");
        let part = tmp.out().join("model.safetensors.part");
        fs::write(&part, &files["model.safetensors"].body).expect("part");

        let report = fetch(&hub.request(&tmp.out())).expect("fetch");
        assert!(
            report
                .files
                .iter()
                .any(|f| f.name == "model.safetensors" && f.downloaded)
        );
        assert!(!part.exists() && tmp.out().join("model.safetensors").is_file());
        assert!(!hub.gets().iter().any(|s| s.path.starts_with("/cdn/")));
    }

    #[test]
    fn stale_part_is_discarded_after_checksum_failure() {
        let files = base_files();
        let hub = FakeHub::start(files.clone(), Behaviour::default());
        let tmp = TempDir::new("stale");
        fs::create_dir_all(tmp.out()).expect("out");
        fs::write(tmp.out().join("model.safetensors.part"), vec![0xAAu8; 1000])
            .expect("stale part");

        fetch(&hub.request(&tmp.out())).expect("fetch");
        assert_eq!(
            fs::read(tmp.out().join("model.safetensors")).expect("read"),
            files["model.safetensors"].body
        );
        let cdn: Vec<Option<String>> = hub
            .gets()
            .into_iter()
            .filter(|s| s.path == "/cdn/model.safetensors")
            .map(|s| s.range)
            .collect();
        assert_eq!(cdn, [Some("bytes=1000-".to_string()), None]);
    }

    #[test]
    fn corrupted_weights_fail_checksum_and_leave_no_file() {
        let files = base_files();
        let behaviour = Behaviour {
            corrupt: Some("model.safetensors"),
            ..Behaviour::default()
        };
        let hub = FakeHub::start(files.clone(), behaviour);
        let tmp = TempDir::new("corrupt");

        let err = fetch(&hub.request(&tmp.out())).expect_err("must fail");
        let msg = assert_one_line(&err);
        let want = hex(&Sha256::digest(&files["model.safetensors"].body));
        match &err {
            HubError::ChecksumMismatch {
                file,
                algo,
                expected,
                actual,
            } => {
                assert_eq!((file.as_str(), *algo), ("model.safetensors", "sha256"));
                assert_eq!(expected, &want);
                assert!(is_hex(actual, 64) && actual != &want);
                assert!(
                    msg.contains("model.safetensors")
                        && msg.contains(expected)
                        && msg.contains(actual)
                );
            }
            other => panic!("wrong error: {other}"),
        }
        assert!(!tmp.out().join("model.safetensors").exists());
        assert!(leftover_parts(&tmp.out()).is_empty());
        assert!(!tmp.out().join(MANIFEST_NAME).exists());
    }

    #[test]
    fn corrupted_json_fails_git_blob_sha1() {
        let behaviour = Behaviour {
            corrupt: Some("config.json"),
            ..Behaviour::default()
        };
        let hub = FakeHub::start(base_files(), behaviour);
        let tmp = TempDir::new("corrupt-json");
        let err = fetch(&hub.request(&tmp.out())).expect_err("must fail");
        assert_one_line(&err);
        assert!(
            matches!(&err, HubError::ChecksumMismatch { file, algo: "git-sha1", .. } if file == "config.json"),
            "{err}"
        );
        assert!(!tmp.out().join("config.json").exists());
        assert!(leftover_parts(&tmp.out()).is_empty());
    }

    #[test]
    fn falls_back_to_pytorch_model_bin() {
        let mut files = base_files();
        let weights = files.remove("model.safetensors").expect("weights");
        files.insert("pytorch_model.bin".into(), weights.clone());
        let hub = FakeHub::start(files, Behaviour::default());
        let tmp = TempDir::new("bin");

        let report = fetch(&hub.request(&tmp.out())).expect("fetch");
        assert_eq!(names(&report).last(), Some(&"pytorch_model.bin"));
        assert_eq!(
            fs::read(tmp.out().join("pytorch_model.bin")).expect("read"),
            weights.body
        );
        assert!(!tmp.out().join("model.safetensors").exists());
        assert!(
            hub.log()
                .iter()
                .any(|s| s.path.ends_with("/model.safetensors") && s.status == 404)
        );
    }

    #[test]
    fn falls_back_to_vocab_and_merges() {
        let mut files = base_files();
        files.remove("tokenizer.json");
        files.insert("vocab.json".into(), regular("{\"a</w>\": 0}\n"));
        files.insert("merges.txt".into(), regular("#version: 0.2\na b\n"));
        let hub = FakeHub::start(files.clone(), Behaviour::default());
        let tmp = TempDir::new("vocab");

        let report = fetch(&hub.request(&tmp.out())).expect("fetch");
        let got = names(&report);
        assert!(
            got.contains(&"vocab.json")
                && got.contains(&"merges.txt")
                && !got.contains(&"tokenizer.json")
        );
        assert_eq!(
            fs::read(tmp.out().join("merges.txt")).expect("read"),
            files["merges.txt"].body
        );

        // Neither tokenizer form: a clear error.
        let mut files = base_files();
        files.remove("tokenizer.json");
        let hub = FakeHub::start(files, Behaviour::default());
        let err = fetch(&hub.request(&TempDir::new("notok").out())).expect_err("must fail");
        assert!(
            matches!(&err, HubError::FileNotFound { file, .. } if file.starts_with("tokenizer.json")),
            "{err}"
        );
    }

    #[test]
    fn unreachable_endpoint_fails_fast_with_one_line_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        }; // dropped: nothing listens there any more
        let tmp = TempDir::new("unreachable");
        let mut req = FetchRequest::new(DEFAULT_REPO, DEFAULT_REVISION, tmp.out());
        req.endpoint = format!("http://127.0.0.1:{port}/");
        req.progress = false;

        let started = Instant::now();
        let err = fetch(&req).expect_err("nothing listens");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let msg = assert_one_line(&err);
        assert!(matches!(err, HubError::Unreachable { .. }), "{msg}");
        assert!(
            msg.starts_with(&format!("can't reach http://127.0.0.1:{port} (")),
            "{msg}"
        );
        assert!(
            msg.ends_with("); download the folder elsewhere and pass --model DIR"),
            "{msg}"
        );
        assert!(!tmp.out().exists(), "nothing should be created");
    }

    #[test]
    fn unknown_repo_and_revision_are_reported() {
        let hub = FakeHub::start(base_files(), Behaviour::default());
        let tmp = TempDir::new("notfound");

        let mut req = hub.request(&tmp.out());
        req.repo = "tester/no-such-model".into();
        let err = fetch(&req).expect_err("no such repo");
        let msg = assert_one_line(&err);
        assert!(matches!(err, HubError::RepoNotFound { .. }), "{msg}");
        assert!(
            msg.contains("tester/no-such-model") && msg.contains("HF_TOKEN"),
            "{msg}"
        );

        let mut req = hub.request(&tmp.out());
        req.revision = "v9".into();
        let err = fetch(&req).expect_err("no such revision");
        let msg = assert_one_line(&err);
        assert!(matches!(err, HubError::RevisionNotFound { .. }), "{msg}");
        assert!(msg.contains("\"v9\""), "{msg}");
        assert!(!tmp.out().exists());
    }

    #[test]
    fn gated_repo_needs_token_and_token_is_sent() {
        let behaviour = Behaviour {
            token: Some("hf_secret"),
            cdn_host: Some("localhost"),
            ..Behaviour::default()
        };
        let hub = FakeHub::start(base_files(), behaviour);
        let tmp = TempDir::new("gated");

        let err = fetch(&hub.request(&tmp.out())).expect_err("no token");
        let msg = assert_one_line(&err);
        assert!(matches!(err, HubError::Gated { status: 401, .. }), "{msg}");
        assert!(msg.contains("HF_TOKEN"), "{msg}");

        let mut req = hub.request(&tmp.out());
        req.token = Some("hf_secret".into());
        fetch(&req).expect("with token");
        let hub_requests: Vec<Seen> = hub
            .log()
            .into_iter()
            .filter(|s| s.path.contains("/resolve/") && s.status != 401)
            .collect();
        assert!(!hub_requests.is_empty());
        assert!(
            hub_requests
                .iter()
                .all(|s| s.auth.as_deref() == Some("Bearer hf_secret"))
        );
        // The token is not passed on to the CDN host the weights are redirected to.
        let cdn: Vec<Seen> = hub
            .log()
            .into_iter()
            .filter(|s| s.path.starts_with("/cdn/"))
            .collect();
        assert!(
            !cdn.is_empty() && cdn.iter().all(|s| s.auth.is_none()),
            "{cdn:?}"
        );

        let mut req = hub.request(&tmp.out());
        req.token = Some("bad token".into());
        assert!(matches!(fetch(&req), Err(HubError::InvalidToken)));
    }

    #[test]
    fn pr_revision_is_encoded_then_pinned_to_commit() {
        let hub = FakeHub::start(base_files(), Behaviour::default());
        let tmp = TempDir::new("pr");
        let mut req = hub.request(&tmp.out());
        req.revision = "refs/pr/3".into();
        let report = fetch(&req).expect("fetch");
        assert_eq!(report.revision, "refs/pr/3");
        assert_eq!(report.commit.as_deref(), Some(COMMIT));
        let log = hub.log();
        assert_eq!(
            log[0].path,
            format!("/{REPO}/resolve/refs%2Fpr%2F3/config.json")
        );
        let pinned = format!("/{REPO}/resolve/{COMMIT}/");
        assert!(
            log[1..]
                .iter()
                .filter(|s| !s.path.starts_with("/cdn/"))
                .all(|s| s.path.starts_with(&pinned))
        );
    }

    #[test]
    fn disk_errors_name_the_path() {
        let hub = FakeHub::start(base_files(), Behaviour::default());
        let tmp = TempDir::new("disk");
        let blocker = tmp.0.join("not-a-dir");
        fs::write(&blocker, b"x").expect("file");
        let err = fetch(&hub.request(&blocker.join("model")))
            .expect_err("can't create a dir under a file");
        let msg = assert_one_line(&err);
        assert!(matches!(err, HubError::Io { .. }), "{msg}");
        assert!(
            msg.contains(&blocker.join("model").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn validates_inputs() {
        for ok in ["CIDAS/clipseg-rd64-refined", "a/b", "Org_1/model.v2"] {
            assert!(validate_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "clipseg", "a/b/c", "../x", "a/..", "a/b c", "a/-b", "a/b.", "a/b--c", "a/b?x",
            "/b", "a/",
        ] {
            assert!(
                matches!(validate_repo(bad), Err(HubError::InvalidRepo(_))),
                "{bad}"
            );
        }
        for ok in ["main", "v1.0", "refs/pr/3", COMMIT, "feature_x-2"] {
            assert!(validate_revision(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "a/../b", "main..x", "/main", "main/", "a//b", "a b", "a?b", "a%2Fb", "a\nb",
        ] {
            assert!(
                matches!(validate_revision(bad), Err(HubError::InvalidRevision(_))),
                "{bad}"
            );
        }
        assert_eq!(encode_revision("refs/pr/3"), "refs%2Fpr%2F3");
        assert_eq!(
            file_url(
                DEFAULT_ENDPOINT,
                DEFAULT_REPO,
                &encode_revision("main"),
                "config.json"
            ),
            "https://huggingface.co/CIDAS/clipseg-rd64-refined/resolve/main/config.json"
        );
        assert_eq!(
            normalize_endpoint("https://hf-mirror.com/").ok().as_deref(),
            Some("https://hf-mirror.com")
        );
        for bad in ["ftp://x", "huggingface.co", "http://", "http://a b"] {
            assert!(
                matches!(normalize_endpoint(bad), Err(HubError::InvalidEndpoint(_))),
                "{bad}"
            );
        }
        assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
        assert!(matches!(bearer(Some("  ")), Ok(None)));
    }

    #[test]
    fn digests_match_git_and_hub_conventions() {
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let sha = "a".repeat(64);
        assert_eq!(
            Expected::from_headers(Some(&format!("\"{sha}\"")), Some("\"whatever\"")),
            Expected::Sha256(sha)
        );
        assert_eq!(
            Expected::from_headers(None, Some("W/\"CE013625030BA8DBA906F756967F9E9CA394464A\"")),
            Expected::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into())
        );
        assert_eq!(
            Expected::from_headers(None, Some("\"d41d8cd98f00b204e9800998ecf8427e\"")),
            Expected::Unknown
        );
        assert_eq!(
            Expected::from_headers(Some("xet-thing"), Some(&format!("\"{}\"", "b".repeat(40)))),
            Expected::Unknown
        );
    }
}
