//! The `http` import: the guest's only way to the network, handed to the outbound
//! capability ([`HttpSender`]), which enforces the operator's allow-list and network rules.
//!
//! What this side enforces, per call into the guest:
//! - the request budget (`max_requests_per_call`): request `max + 1` gets
//!   `http-error::limit-exceeded` and nothing is sent;
//! - the hostcall data cap: a request whose URL, headers and body together exceed
//!   `max_hostcall_bytes` traps the guest (`hostcall data` limit);
//! - the request body cap before sending and the response body cap before the body is
//!   copied into guest memory (`too-large`), in addition to the sender's own streaming caps.
//!
//! Every [`OutboundError`] maps to the WIT `http-error` case of the same name, one to one.

use std::sync::Arc;

use crate::outbound::{HttpSender, OutboundError, OutboundRequest};
use crate::sandbox::bindings::http::{Host, HttpError, Method, Request, Response};
use crate::sandbox::limits::{LimitHit, Limits};

/// Host side of `airlock:backend/http` for one instance.
pub struct HttpCapability {
    sender: Arc<dyn HttpSender>,
    max_requests_per_call: u32,
    max_request_bytes: usize,
    max_response_bytes: usize,
    max_hostcall_bytes: usize,
    /// Requests made since the current call began.
    requests_this_call: u32,
}

impl HttpCapability {
    pub(crate) fn new(sender: Arc<dyn HttpSender>, limits: &Limits) -> Self {
        HttpCapability {
            sender,
            max_requests_per_call: limits.max_requests_per_call,
            max_request_bytes: limits.max_request_bytes,
            max_response_bytes: limits.max_response_bytes,
            max_hostcall_bytes: limits.max_hostcall_bytes,
            requests_this_call: 0,
        }
    }

    /// Start a new call: the request budget is full again.
    pub(crate) fn begin_call(&mut self) {
        self.requests_this_call = 0;
    }
}

/// The method token as the outbound side expects it.
fn method_token(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Patch => "PATCH".into(),
        Method::Delete => "DELETE".into(),
        Method::Options => "OPTIONS".into(),
        Method::Other(token) => token,
    }
}

/// The WIT case for an outbound error: the same case, the same message.
fn to_wit(error: OutboundError) -> HttpError {
    match error {
        OutboundError::Denied(m) => HttpError::Denied(m),
        OutboundError::Timeout(m) => HttpError::Timeout(m),
        OutboundError::Connection(m) => HttpError::Connection(m),
        OutboundError::TooLarge(m) => HttpError::TooLarge(m),
        OutboundError::InvalidRequest(m) => HttpError::InvalidRequest(m),
        OutboundError::LimitExceeded(m) => HttpError::LimitExceeded(m),
    }
}

/// Bytes the guest handed over in `req`.
fn request_size(req: &Request) -> usize {
    let method = match &req.method {
        Method::Other(token) => token.len(),
        _ => 0,
    };
    let headers: usize = req.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    method + req.url.len() + headers + req.body.as_ref().map_or(0, Vec::len)
}

impl Host for HttpCapability {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let size = request_size(&req);
        if size > self.max_hostcall_bytes {
            return Err(LimitHit::HostcallData {
                call: "http.send",
                bytes: size,
                max: self.max_hostcall_bytes,
            }
            .into());
        }
        if self.requests_this_call >= self.max_requests_per_call {
            return Ok(Err(HttpError::LimitExceeded(format!(
                "this call already made {} HTTP requests, the most allowed per call",
                self.max_requests_per_call
            ))));
        }
        self.requests_this_call += 1;
        if let Some(body) = &req.body
            && body.len() > self.max_request_bytes
        {
            return Ok(Err(HttpError::TooLarge(format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                body.len(),
                self.max_request_bytes
            ))));
        }
        let request = OutboundRequest {
            method: method_token(req.method),
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        Ok(match self.sender.send(request).await {
            Ok(resp) if resp.body.len() > self.max_response_bytes => {
                Err(HttpError::TooLarge(format!(
                    "response body of {} bytes exceeds the limit of {} bytes",
                    resp.body.len(),
                    self.max_response_bytes
                )))
            }
            Ok(resp) => Ok(Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
            }),
            Err(e) => Err(to_wit(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::OutboundResponse;
    use std::sync::Mutex;

    struct Recorder(
        Mutex<Vec<OutboundRequest>>,
        Result<OutboundResponse, OutboundError>,
    );

    #[async_trait::async_trait]
    impl HttpSender for Recorder {
        async fn send(&self, r: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
            self.0.lock().unwrap().push(r);
            self.1.clone()
        }
    }

    fn get(url: &str) -> Request {
        Request {
            method: Method::Other("LIST".into()),
            url: url.into(),
            headers: vec![("x-a".into(), "1".into())],
            body: None,
        }
    }

    fn ok(body: &[u8]) -> Result<OutboundResponse, OutboundError> {
        Ok(OutboundResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
        })
    }

    #[tokio::test]
    async fn forwards_requests_and_spends_the_budget() {
        let rec = Arc::new(Recorder(Mutex::new(vec![]), ok(b"hi")));
        let limits = Limits {
            max_requests_per_call: 2,
            ..Limits::default()
        };
        let mut cap = HttpCapability::new(rec.clone(), &limits);
        for _ in 0..2 {
            let resp = cap.send(get("http://a/x")).await.unwrap().unwrap();
            assert_eq!(resp.body, b"hi");
        }
        let third = cap.send(get("http://a/x")).await.unwrap().unwrap_err();
        assert!(matches!(third, HttpError::LimitExceeded(ref m)
            if m == "this call already made 2 HTTP requests, the most allowed per call"));
        assert_eq!(rec.0.lock().unwrap().len(), 2);
        assert_eq!(rec.0.lock().unwrap()[0].method, "LIST");
        cap.begin_call();
        assert!(cap.send(get("http://a/x")).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn maps_errors_one_to_one_and_caps_sizes() {
        let denied = Arc::new(Recorder(
            Mutex::new(vec![]),
            Err(OutboundError::Denied("169.254.169.254 is blocked".into())),
        ));
        let mut cap = HttpCapability::new(denied, &Limits::default());
        assert!(matches!(
            cap.send(get("http://169.254.169.254/")).await.unwrap(),
            Err(HttpError::Denied(ref m)) if m == "169.254.169.254 is blocked"
        ));

        let big = Arc::new(Recorder(Mutex::new(vec![]), ok(&[0u8; 100])));
        let limits = Limits {
            max_response_bytes: 99,
            max_request_bytes: 10,
            max_hostcall_bytes: 1000,
            ..Limits::default()
        };
        let mut cap = HttpCapability::new(big.clone(), &limits);
        assert!(matches!(
            cap.send(get("http://a/")).await.unwrap(),
            Err(HttpError::TooLarge(ref m)) if m.contains("response body of 100 bytes")
        ));
        let mut post = get("http://a/");
        post.body = Some(vec![1; 11]);
        assert!(matches!(
            cap.send(post).await.unwrap(),
            Err(HttpError::TooLarge(ref m)) if m.contains("request body of 11 bytes")
        ));
        let huge = get(&"h".repeat(2000));
        let err = cap.send(huge).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit::HostcallData {
                call: "http.send",
                ..
            })
        ));
        assert_eq!(big.0.lock().unwrap().len(), 1);
    }
}
