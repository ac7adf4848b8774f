use super::*;
use rusty_s3::actions::{GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

const SIGNED_FOR: Duration = Duration::from_secs(60);

struct Client {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Client {
    fn new(s3: &TestS3) -> Self {
        let endpoint = s3.endpoint.parse().expect("endpoint URL");
        Self {
            bucket: Bucket::new(
                endpoint,
                UrlStyle::Path,
                s3.bucket.clone(),
                s3.region.clone(),
            )
            .expect("bucket"),
            credentials: Credentials::new(s3.access_key_id.clone(), s3.secret_access_key.clone()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                // A connection per request: a kept-alive one to the stopped
                // server would fail as a send error, not a connect error.
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
        }
    }

    async fn put(&self, key: &str, body: &'static [u8]) -> reqwest::Result<u16> {
        let url = PutObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
        let response = self.http.put(url).body(body).send().await?;
        Ok(response.status().as_u16())
    }

    async fn get(&self, key: &str) -> reqwest::Result<(u16, Vec<u8>)> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(SIGNED_FOR);
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }
}

#[tokio::test]
async fn a_stopped_store_refuses_connections_and_comes_back_with_its_objects() {
    let Some(mut s3) = TestS3::start("TestS3 stop and restart") else {
        return;
    };
    let client = Client::new(&s3);
    let segment = "tenants/u1/wal/000000010000000000000001.lz4";
    assert_eq!(client.put(segment, b"segment").await.expect("put"), 200);
    assert_eq!(
        client
            .put("tenants/u2/tenant.json", b"{}")
            .await
            .expect("put"),
        200
    );
    assert_eq!(s3.list_keys("tenants/u1/"), vec![segment.to_owned()]);
    assert_eq!(s3.list_keys("tenants/").len(), 2);
    assert_eq!(s3.object(segment).as_deref(), Some(&b"segment"[..]));
    assert_eq!(s3.object("tenants/../x"), None);

    s3.stop();
    assert!(!s3.is_running());
    let refused = TcpStream::connect(("127.0.0.1", s3.port())).expect_err("port closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let down = client
        .put("tenants/u1/wal/late", b"x")
        .await
        .expect_err("store down");
    assert!(down.is_connect(), "{down}");
    assert_eq!(s3.list_keys("tenants/u1/"), vec![segment.to_owned()]);
    s3.stop();

    let port = s3.port();
    s3.restart();
    assert!(s3.is_running());
    assert_eq!(s3.port(), port);
    assert_eq!(s3.endpoint, format!("http://127.0.0.1:{port}"));
    let (status, body) = client.get(segment).await.expect("get after restart");
    assert_eq!((status, body.as_slice()), (200, &b"segment"[..]));
    assert_eq!(
        client.put("tenants/u1/wal/late", b"x").await.expect("put"),
        200
    );
    assert_eq!(
        s3.list_keys("tenants/u1/"),
        vec![segment.to_owned(), "tenants/u1/wal/late".to_owned()]
    );

    // A restart of a running server works too.
    s3.restart();
    assert_eq!(client.get(segment).await.expect("get").0, 200);
    assert!(!format!("{s3:?}").contains(&s3.secret_access_key));
}
