//! `edt.hub.v1.DocumentSubmission` over gRPC.

use crate::hub::Hub;
use crate::ingest::SubmitError;
use crate::wire as convert;
use edt_proto::v1::{self, document_submission_server::DocumentSubmission};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SubmissionService {
    pub hub: Arc<Hub>,
}

/// Room in a submission for everything but the payload (ids, names, title), in bytes.
pub const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// Submissions up to this many times the payload limit are refused as an invalid `payload`
/// (the sender sent a document that is too large); past it, as too much to take at all.
pub const OVERSIZE_FACTOR: usize = 4;

/// The submission service, with tonic's status for a request longer than it will read
/// (`OUT_OF_RANGE`, "decoded message length too large") made into what a sender can act on:
/// `INVALID_ARGUMENT` naming `payload` and its limit for anything up to [`OVERSIZE_FACTOR`]
/// times the limit, `RESOURCE_EXHAUSTED` beyond. Either way the request is refused from its
/// length prefix: the document itself is never read into memory.
#[derive(Clone)]
pub struct SizeLimited<S> {
    inner: S,
    max_payload: usize,
}

impl<S> SizeLimited<S> {
    pub fn new(inner: S, max_payload: usize) -> Self {
        Self { inner, max_payload }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for SizeLimited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for SizeLimited<S>
where
    S: tonic::codegen::Service<
        tonic::codegen::http::Request<B>,
        Response = tonic::codegen::http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let max_payload = self.max_payload;
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let oversize =
                Status::from_header_map(response.headers()).and_then(|s| oversize_request(&s));
            Ok(match oversize {
                Some(len) => oversize_status(len, max_payload).into_http(),
                None => response,
            })
        })
    }
}

/// The length of a request tonic refused as longer than it reads, from its status.
fn oversize_request(status: &Status) -> Option<usize> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    let rest = status
        .message()
        .split_once("decoded message length too large: found ")?
        .1;
    rest.split(' ').next()?.parse().ok()
}

/// What a sender is told about a submission of `len` bytes, too long to read.
fn oversize_status(len: usize, max_payload: usize) -> Status {
    if len <= max_payload.saturating_mul(OVERSIZE_FACTOR) + ENVELOPE_ALLOWANCE {
        metrics::counter!("edthub_ingest_rejected_total", "field" => "payload").increment(1);
        Status::invalid_argument(format!(
            "payload: the submission is {len} bytes, so its payload is over the limit; the limit \
             is {max_payload} bytes (limits.max_payload_bytes); nothing was stored"
        ))
    } else {
        metrics::counter!("edthub_ingest_rejected_total", "field" => "request-size").increment(1);
        Status::resource_exhausted(format!(
            "the submission is {len} bytes, more than {OVERSIZE_FACTOR} times the payload limit \
             of {max_payload} bytes (limits.max_payload_bytes): refused unread; nothing was stored"
        ))
    }
}

/// The gRPC status for a refused submission.
pub fn status_of(e: SubmitError) -> Status {
    if let Some(original) = e.reused_local_id() {
        let mut status = Status::already_exists(e.to_string());
        if let Ok(v) = original.to_string().parse() {
            status
                .metadata_mut()
                .insert("edthub-original-message-id", v);
        }
        return status;
    }
    match e {
        SubmitError::Invalid { field, rule } => {
            metrics::counter!("edthub_ingest_rejected_total", "field" => field).increment(1);
            Status::invalid_argument(format!("{field}: {rule}"))
        }
        SubmitError::Unavailable(why) | SubmitError::DiskFull(why) => Status::unavailable(why),
        SubmitError::Backlog(why) => {
            let mut status = Status::unavailable(why);
            if let Ok(v) = (crate::hub::BACKLOG_RETRY_SECS * 1000).to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            status
        }
        SubmitError::Store(e) => {
            tracing::error!(error = %e, "submission could not be stored");
            Status::unavailable(format!("the document could not be stored durably: {e}"))
        }
    }
}

#[tonic::async_trait]
impl DocumentSubmission for SubmissionService {
    async fn submit_document(
        &self,
        request: Request<v1::SubmitDocumentRequest>,
    ) -> Result<Response<v1::SubmitDocumentResponse>, Status> {
        use crate::auth;
        let caller = auth::identify(&self.hub.config, &request, "submit a document")?;
        auth::require(
            &caller,
            &[crate::config::Role::Submitter],
            "submit documents",
        )?;
        let sub =
            super::validate(request.into_inner(), &self.hub.config.limits).map_err(status_of)?;
        if let Some(c) = &caller {
            if !c.acts_for(&sub.sender_ods) {
                return Err(auth::deny(
                    Status::permission_denied(format!(
                        "{} may submit only as {}, not as {}",
                        c.name,
                        c.ods.join(", "),
                        sub.sender_ods
                    )),
                    &c.name,
                    "submit a document",
                ));
            }
        }
        let actor = match &caller {
            Some(c) => format!("grpc:{}", c.name),
            None => format!("grpc:{}", sub.sender_ods),
        };
        let receipt = crate::ingest::submit(&self.hub, sub, &actor)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::SubmitDocumentResponse {
            message_id: receipt.message_id.to_string(),
            duplicate: receipt.duplicate,
            received_at: Some(convert::ts(receipt.received_ms)),
            deliveries: receipt.deliveries.iter().map(convert::delivery).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversize_requests_name_the_payload_limit_or_are_exhausted() {
        let tonic_says = |len: usize| {
            Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: 1089536 bytes"
            ))
        };
        assert_eq!(oversize_request(&tonic_says(1_200_000)), Some(1_200_000));
        assert_eq!(
            oversize_request(&Status::out_of_range("something else")),
            None
        );
        assert_eq!(
            oversize_request(&Status::invalid_argument(
                "decoded message length too large: found 9 bytes"
            )),
            None
        );
        let s = oversize_status(3_000_000, 1_048_576);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("payload: "), "{}", s.message());
        assert!(
            s.message().contains("the limit is 1048576 bytes"),
            "{}",
            s.message()
        );
        let s = oversize_status(4 * 1_048_576 + ENVELOPE_ALLOWANCE, 1_048_576);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = oversize_status(4 * 1_048_576 + ENVELOPE_ALLOWANCE + 1, 1_048_576);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("1048576"), "{}", s.message());
    }
}
