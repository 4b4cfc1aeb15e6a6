//! `Publishing`: a client stream of a header and row batches becomes one version.

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{dataset_id_in, version_out};
use super::identity::caller;
use super::status::client_stream_status;
use crate::pb::{self, publish_request::Msg};
use crate::service::{publishing, Gateway, ServiceError};

/// The `bth.gateway.v1.Publishing` service.
#[derive(Debug, Clone)]
pub struct PublishingService(pub Gateway);

#[tonic::async_trait]
impl pb::publishing_server::Publishing for PublishingService {
    async fn publish(
        &self,
        request: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let caller = caller(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::PublishRequest { msg: Some(Msg::Header(h)) })) => h,
            Some(Ok(_)) => return Err(ServiceError::invalid("header", "the first message must be the header").into()),
            Some(Err(s)) => return Err(client_stream_status(s)),
            None => return Err(ServiceError::invalid("header", "the stream is empty").into()),
        };
        let dataset = dataset_id_in("header.dataset_id", &header.dataset_id)?;
        let mut upload = publishing::start(&self.0, &caller, &dataset, &header.idempotency_key).await?;
        let outcome: Result<(), Status> = async {
            while let Some(msg) = stream.next().await {
                match msg.map_err(client_stream_status)?.msg {
                    Some(Msg::Batch(batch)) => {
                        let batch = batch
                            .decode()
                            .map_err(|_| ServiceError::invalid("batch", "does not decode as a RowBatch"))?;
                        upload.add(batch).await?;
                    }
                    Some(Msg::Header(_)) => {
                        return Err(ServiceError::invalid("header", "only the first message is a header").into())
                    }
                    None => return Err(ServiceError::invalid("msg", "is empty").into()),
                }
            }
            Ok(())
        }
        .await;
        if let Err(status) = outcome {
            upload.abort().await;
            return Err(status);
        }
        let (version, created) = upload.finish().await?;
        Ok(Response::new(pb::PublishResponse {
            dataset_id: dataset.to_string(),
            version: Some(version_out(&version)),
            created,
        }))
    }
}
