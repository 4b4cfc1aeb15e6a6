//! `Admin`: the participant registry over gRPC.

use tonic::{Request, Response, Status};

use super::convert::{participant_id_in, participant_in, participant_out};
use super::identity::caller;
use crate::pb;
use crate::service::{participants, Gateway};

/// The `bth.gateway.v1.Admin` service.
#[derive(Debug, Clone)]
pub struct AdminService(pub Gateway);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn register_participant(
        &self,
        request: Request<pb::RegisterParticipantRequest>,
    ) -> Result<Response<pb::Participant>, Status> {
        let caller = caller(&request)?;
        let p = participant_in(request.get_ref().participant.as_ref())?;
        let p = participants::register(&self.0, &caller, p).await?;
        Ok(Response::new(participant_out(&p)))
    }

    async fn suspend_participant(
        &self,
        request: Request<pb::SuspendParticipantRequest>,
    ) -> Result<Response<pb::Participant>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let id = participant_id_in("id", &r.id)?;
        let p = participants::suspend(&self.0, &caller, &id, &r.reason).await?;
        Ok(Response::new(participant_out(&p)))
    }

    async fn list_participants(
        &self,
        request: Request<pb::ListParticipantsRequest>,
    ) -> Result<Response<pb::ListParticipantsResponse>, Status> {
        let caller = caller(&request)?;
        let list = participants::list(&self.0, &caller).await?;
        Ok(Response::new(pb::ListParticipantsResponse { participants: list.iter().map(participant_out).collect() }))
    }
}
