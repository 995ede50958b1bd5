//! `edt.hub.v1.DocumentSubmission` over gRPC.

use crate::admin::convert;
use crate::hub::{Hub, SubmitError};
use edt_proto::v1::{self, document_submission_server::DocumentSubmission};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SubmissionService {
    pub hub: Arc<Hub>,
}

/// The gRPC status for a refused submission.
pub fn status_of(e: SubmitError) -> Status {
    match e {
        SubmitError::Invalid { field, rule } => {
            metrics::counter!("edthub_ingest_rejected_total", "field" => field).increment(1);
            Status::invalid_argument(format!("{field}: {rule}"))
        }
        SubmitError::Unavailable(why) => Status::unavailable(why),
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
        let receipt = self.hub.submit(sub, &actor).await.map_err(status_of)?;
        Ok(Response::new(v1::SubmitDocumentResponse {
            message_id: receipt.message_id.to_string(),
            duplicate: receipt.duplicate,
            received_at: Some(convert::ts(receipt.received_ms)),
            deliveries: receipt.deliveries.iter().map(convert::delivery).collect(),
        }))
    }
}
