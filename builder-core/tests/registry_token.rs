//! The Bearer token flow and retries, against a small scripted registry on 127.0.0.1
//! (docker-registry's own token auth needs a signing token server, which Debian lacks).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rbuild_core::{
    ContentStore, Digest, ImageName,
    registry::{PushOptions, RegistryClient, RegistryCredentials, RegistryOptions, pull, push},
};

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A reply status that makes the server close the connection without answering.
const DROP: u16 = 0;

/// Serves each connection with `handler`, one request per connection.
fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let handler = handler.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let path = parts.next().unwrap_or_default().to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let (status, extra, body) = handler(&Request {
                    method,
                    path,
                    headers,
                    body,
                });
                if status == DROP {
                    // A broken connection: close without answering.
                    return;
                }
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    addr
}

#[test]
fn bearer_token_is_fetched_once_per_scope_and_5xx_and_broken_connections_are_retried() {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = b"not really a layer, but a blob all the same".to_vec();
    let (cd, ld) = (Digest::of(&config), Digest::of(&layer));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let md = Digest::of(&manifest);

    let token_fetches = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let token_queries = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicUsize::new(0));
    let dr = dropped.clone();
    let addr_cell: Arc<Mutex<String>> = Arc::default();
    let (tf, un, tq, ac) = (
        token_fetches.clone(),
        unavailable.clone(),
        token_queries.clone(),
        addr_cell.clone(),
    );
    let blobs: HashMap<String, Vec<u8>> = [
        (format!("/v2/team/app/blobs/{cd}"), config),
        (format!("/v2/team/app/blobs/{ld}"), layer),
    ]
    .into();
    let addr = serve(move |req| {
        if req.path.starts_with("/token") {
            tf.fetch_add(1, Ordering::SeqCst);
            tq.lock()
                .unwrap()
                .push((req.path.clone(), req.headers.get("authorization").cloned()));
            return (200, vec![], br#"{"token":"tok-1"}"#.to_vec());
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-1") {
            let realm = format!("http://{}/token", ac.lock().unwrap());
            let challenge = format!(
                r#"Bearer realm="{realm}",service="fake",scope="repository:team/app:pull""#
            );
            return (401, vec![("WWW-Authenticate".into(), challenge)], vec![]);
        }
        if req.path == "/v2/team/app/manifests/1" && req.method == "GET" {
            // The first authorized manifest request loses its connection.
            if dr.fetch_add(1, Ordering::SeqCst) == 0 {
                return (DROP, vec![], vec![]);
            }
            let ty = "application/vnd.oci.image.manifest.v1+json".to_owned();
            return (200, vec![("Content-Type".into(), ty)], manifest.clone());
        }
        if let Some(b) = blobs.get(&req.path) {
            // The first blob request meets an overloaded registry.
            if un.fetch_add(1, Ordering::SeqCst) == 0 {
                return (503, vec![], b"busy".to_vec());
            }
            return (200, vec![], b.clone());
        }
        (404, vec![], b"{}".to_vec())
    });
    *addr_cell.lock().unwrap() = addr.clone();

    let creds = RegistryCredentials {
        username: "robot".into(),
        password: "pw".into(),
    };
    let client = RegistryClient::with_credentials(
        &addr,
        Some(creds.clone()),
        RegistryOptions::default()
            .with_parallel(1)
            .with_backoff(std::time::Duration::from_millis(10)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let name: ImageName = format!("{addr}/team/app:1").parse().unwrap();
    let desc = pull(
        &client,
        &store,
        &name,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert_eq!(Digest::try_from(desc.digest()).unwrap(), md);
    assert!(store.contains(&cd) && store.contains(&ld));

    assert_eq!(
        token_fetches.load(Ordering::SeqCst),
        1,
        "token not cached per scope"
    );
    let queries = token_queries.lock().unwrap();
    let (path, auth) = &queries[0];
    assert_eq!(
        path,
        "/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull"
    );
    assert_eq!(auth.as_deref(), Some(creds.basic_header().as_str()));
    // One dropped connection retried: two manifest requests.
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    // Two blobs, one 503 retried: three blob requests.
    assert_eq!(unavailable.load(Ordering::SeqCst), 3);
}

/// What the scripted registry holds: path -> (media type, content).
type Kept = HashMap<String, (String, Vec<u8>)>;

/// A multi-layer push and pull through a registry that wants Bearer tokens (as Docker Hub,
/// GHCR, Quay do), with the client's parallel blob transfers all starting unauthenticated:
/// every blob arrives, the manifest last, and a fresh store pulls the same image back.
#[test]
fn a_multi_layer_image_goes_up_and_comes_back_through_bearer_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("a")).unwrap();
    let layers: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("layer {i} of a bearer-auth push").into_bytes())
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_blob = store.put(config.as_bytes()).unwrap();
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let blob = store.put(l).unwrap();
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob.digest.to_string(), "size": blob.size,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_blob.digest.to_string(), "size": config_blob.size,
        },
        "layers": layer_descs,
    })
    .to_string();
    let manifest_blob = store.put(manifest.as_bytes()).unwrap();
    let desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        manifest_blob.size,
        &manifest_blob.digest,
    );
    store
        .tag(&"local/bearer:1".parse().unwrap(), &desc)
        .unwrap();

    // The registry: tokens from /token for the robot's password, blobs and manifests kept
    // in memory, uploads in one PUT.
    let kept: Arc<Mutex<Kept>> = Arc::default();
    let addr_cell: Arc<Mutex<String>> = Arc::default();
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let (k, ac, un) = (kept.clone(), addr_cell.clone(), unauthorized.clone());
    let robot = RegistryCredentials {
        username: "robot".into(),
        password: "pw".into(),
    };
    let basic = robot.basic_header();
    let addr = serve(move |req| {
        if req.path.starts_with("/token") {
            if req.headers.get("authorization") != Some(&basic) {
                return (401, vec![], b"{}".to_vec());
            }
            return (200, vec![], br#"{"token":"tok-push"}"#.to_vec());
        }
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer tok-push") {
            un.fetch_add(1, Ordering::SeqCst);
            let realm = format!("http://{}/token", ac.lock().unwrap());
            let challenge = format!(
                r#"Bearer realm="{realm}",service="fake",scope="repository:team/app:pull,push""#
            );
            return (401, vec![("WWW-Authenticate".into(), challenge)], vec![]);
        }
        let mut kept = k.lock().unwrap();
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        match req.method.as_str() {
            "GET" if path == "/v2/" => (200, vec![], b"{}".to_vec()),
            "HEAD" | "GET" => match kept.get(path) {
                Some((ty, body)) => {
                    let mut headers = vec![("Content-Type".to_owned(), ty.clone())];
                    headers.push((
                        "Docker-Content-Digest".to_owned(),
                        Digest::of(body).to_string(),
                    ));
                    let body = if req.method == "HEAD" {
                        Vec::new()
                    } else {
                        body.clone()
                    };
                    (200, headers, body)
                }
                None => (404, vec![], Vec::new()),
            },
            "POST" if path.ends_with("/blobs/uploads/") => {
                let location = format!("{path}{}", kept.len());
                (202, vec![("Location".to_owned(), location)], Vec::new())
            }
            "PUT" if path.contains("/blobs/uploads/") => {
                let digest = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or_default()
                    .replace("%3A", ":");
                assert_eq!(
                    Digest::of(&req.body).to_string(),
                    digest,
                    "a blob arrived changed"
                );
                let repo = path.split("/blobs/").next().unwrap_or_default();
                kept.insert(
                    format!("{repo}/blobs/{digest}"),
                    ("application/octet-stream".to_owned(), req.body.clone()),
                );
                (201, Vec::new(), Vec::new())
            }
            "PUT" if path.contains("/manifests/") => {
                let ty = req.headers.get("content-type").cloned().unwrap_or_default();
                kept.insert(path.to_owned(), (ty, req.body.clone()));
                let digest = Digest::of(&req.body).to_string();
                (
                    201,
                    vec![("Docker-Content-Digest".to_owned(), digest)],
                    Vec::new(),
                )
            }
            _ => (404, vec![], Vec::new()),
        }
    });
    *addr_cell.lock().unwrap() = addr.clone();

    let client =
        RegistryClient::with_credentials(&addr, Some(robot.clone()), RegistryOptions::default());
    let dest: ImageName = format!("{addr}/team/app:1").parse().unwrap();
    let pushed = push(
        &client,
        &store,
        "local/bearer:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("push through bearer auth failed: {e:?}"));
    assert_eq!(pushed, manifest_blob.digest);
    let blobs = kept
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.contains("/blobs/"))
        .count();
    assert_eq!(blobs, 6, "five layers and the config");
    assert!(
        unauthorized.load(Ordering::SeqCst) >= 1,
        "the registry never challenged"
    );

    let fresh = ContentStore::open(tmp.path().join("b")).unwrap();
    let client = RegistryClient::with_credentials(&addr, Some(robot), RegistryOptions::default());
    let pulled = pull(
        &client,
        &fresh,
        &dest,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert_eq!(
        Digest::try_from(pulled.digest()).unwrap(),
        manifest_blob.digest
    );
    for layer in &layers {
        assert!(fresh.contains(&Digest::of(layer)));
    }
}
