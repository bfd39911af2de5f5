//! containerd's task API (v3), one file per operation; this file routes and maps errors. The
//! operations that change a container run through `completion::to_completion`: a new one that
//! changes anything must too.

mod connect;
mod create;
mod delete;
mod exec;
mod exit;
mod kill;
mod launch;
mod pause;
mod start;
mod state;
mod stats;
mod stdio;
mod wait;

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::{api::*, Task, TtrpcContext, TtrpcResult};

use crate::{completion::to_completion, log_scope::Ids, pod::Pod};

pub use exit::watch_exit;

pub struct TaskService {
    pod: Arc<Pod>,
}

impl TaskService {
    pub fn new(pod: Arc<Pod>) -> Self {
        Self { pod }
    }

    pub fn pod(&self) -> Arc<Pod> {
        self.pod.clone()
    }
}

fn edge<T>(r: crate::error::Result<T>) -> TtrpcResult<T> {
    r.map_err(|e| {
        log::debug!("task request failed: {e}");
        e.into()
    })
}

fn done(r: crate::error::Result<()>) -> TtrpcResult<Empty> {
    edge(r.map(|()| Empty::new()))
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        edge(state::state(&self.pod, &req))
    }
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        edge(
            to_completion(&self.pod, Ids::of(&req.id, ""), |pod| async move {
                create::create(&pod, req).await
            })
            .await,
        )
    }
    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        edge(
            to_completion(
                &self.pod,
                Ids::of(&req.id, &req.exec_id),
                |pod| async move { start::start(&pod, &req).await },
            )
            .await,
        )
    }
    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        edge(
            to_completion(
                &self.pod,
                Ids::of(&req.id, &req.exec_id),
                |pod| async move { delete::delete(&pod, &req).await },
            )
            .await,
        )
    }
    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        edge(state::pids(&self.pod, &req).await)
    }
    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(&self.pod, Ids::of(&req.id, ""), |pod| async move {
                pause::pause(&pod, &req.id).await
            })
            .await,
        )
    }
    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(&self.pod, Ids::of(&req.id, ""), |pod| async move {
                pause::resume(&pod, &req.id).await
            })
            .await,
        )
    }
    async fn checkpoint(&self, _: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(&self.pod, Ids::of(&req.id, ""), |pod| async move {
                pause::checkpoint(&pod, &req.id, &req.path).await
            })
            .await,
        )
    }
    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(
                &self.pod,
                Ids::of(&req.id, &req.exec_id),
                |pod| async move { kill::kill(&pod, &req).await },
            )
            .await,
        )
    }
    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(
                &self.pod,
                Ids::of(&req.id, &req.exec_id),
                |pod| async move { exec::exec(&pod, req).await },
            )
            .await,
        )
    }
    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        done(stdio::resize_pty(&self.pod, &req).await)
    }
    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        done(
            to_completion(
                &self.pod,
                Ids::of(&req.id, &req.exec_id),
                |pod| async move { stdio::close_io(&pod, &req).await },
            )
            .await,
        )
    }
    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        done(
            to_completion(&self.pod, Ids::of(&req.id, ""), |pod| async move {
                stats::update(&pod, &req).await
            })
            .await,
        )
    }
    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        edge(wait::wait(&self.pod, &req).await)
    }
    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        edge(stats::stats(&self.pod, &req))
    }
    async fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        edge(Ok(connect::connect(&self.pod, &req)))
    }
    async fn shutdown(&self, _: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.pod.request_shutdown();
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
