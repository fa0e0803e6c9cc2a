//! The RPCs that steer runs, end to end: idempotent triggers, `CancelPipelineRun`,
//! `ApprovePipelineStage` (with a token file, so the approver has a name) and
//! `ListPipelineRuns` (filters, order, pages).

use std::collections::BTreeSet;
use std::time::Duration;

use labhit_proto::PipelineServiceClient;
use labhit_proto::v1::{
    ApprovePipelineStageRequest, CancelPipelineRunRequest, GetPipelineRunRequest,
    ListPipelineRunsRequest, PipelineRun, RunStatus, StageStatus, TriggerPipelineRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::{
    QUICK, Server, TestResult, authed, code, follow, follow_request, get, git, logs, repo, trigger,
};

async fn start_run(
    client: &mut PipelineServiceClient<Channel>,
    request: TriggerPipelineRequest,
) -> Result<PipelineRun, Box<dyn std::error::Error>> {
    Ok(client
        .trigger_pipeline(request)
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?)
}

fn list(
    repository: Option<&str>,
    status: &[RunStatus],
    size: i32,
    token: &str,
) -> ListPipelineRunsRequest {
    ListPipelineRunsRequest {
        repository: repository.map(str::to_owned),
        status: status.iter().map(|s| *s as i32).collect(),
        page_size: size,
        page_token: token.to_owned(),
    }
}

/// Every run matching the filters, page by page (`size` per page); checks that the pages
/// are full but the last, and disjoint.
async fn all_pages(
    client: &mut PipelineServiceClient<Channel>,
    repository: Option<&str>,
    status: &[RunStatus],
    size: i32,
) -> Result<Vec<PipelineRun>, Box<dyn std::error::Error>> {
    let mut runs: Vec<PipelineRun> = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_pipeline_runs(list(repository, status, size, &token))
            .await?
            .into_inner();
        let last = page.next_page_token.is_empty();
        assert!(
            last || page.runs.len() == usize::try_from(size)?,
            "a page before the last is full"
        );
        for run in page.runs {
            assert!(
                runs.iter().all(|seen| seen.id != run.id),
                "pages are disjoint"
            );
            runs.push(run);
        }
        if last {
            return Ok(runs);
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_run_and_refuses_other_fields() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), QUICK);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;
    let keyed = |key: &str| {
        let mut request = trigger("app", "main");
        request.idempotency_key = Some(key.to_owned());
        request
    };
    let first = start_run(&mut client, keyed("deploy-42")).await?;
    let (_, end) = follow(&mut client, &first.id, 0).await;
    end?;
    // The same request again, and spelled with the default pipeline path: the first run,
    // as it is now; nothing new starts.
    let again = start_run(&mut client, keyed("deploy-42")).await?;
    assert_eq!(again.id, first.id);
    assert_eq!(again.status(), RunStatus::Succeeded);
    let mut explicit = keyed("deploy-42");
    explicit.pipeline_path = Some(".labhit/pipeline.yaml".to_owned());
    assert_eq!(start_run(&mut client, explicit).await?.id, first.id);
    // The same key with other fields is refused, naming the key and the first run.
    let mut other = keyed("deploy-42");
    other.git_ref = commit;
    let (c, m) = code(client.trigger_pipeline(other).await).ok_or("accepted")?;
    assert_eq!(c, Code::AlreadyExists, "{m}");
    assert!(
        m.contains("idempotency_key") && m.contains(&first.id),
        "{m}"
    );
    // Concurrent first attempts with a new key create one run between them.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            let request = keyed("deploy-43");
            tokio::spawn(async move { client.trigger_pipeline(request).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for racer in racers {
        ids.insert(racer.await??.into_inner().run.ok_or("run missing")?.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let runs = all_pages(&mut client, Some("app"), &[], 50).await?;
    assert_eq!(runs.len(), 2, "one run per key: {runs:?}");
    Ok(())
}

/// Two stages: `work` says `marker` and then sleeps, `later` runs after it.
const SLOW_TWO: &str = "engine: \"1\"
pipeline:
  name: slow
  stages:
    work:
      run: |
        echo marker
        exec sleep 600
    later:
      after: work
      run: echo never
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_stage_ends_the_run_and_its_followers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), SLOW_TWO);
    let server = Server::start(
        &dir.path().join("data"),
        &["--repo", &format!("app={}", repo.display())],
    );
    let mut client = server.client().await;
    let run = start_run(&mut client, trigger("app", "main")).await?;
    let mut stream = client.stream_logs(logs(&run.id, 0)).await?.into_inner();
    while let Some(message) = stream.message().await? {
        if message.entry.is_some_and(|e| e.message == "marker") {
            break;
        }
    }
    let follower = {
        let mut client = server.client().await;
        let id = run.id.clone();
        tokio::spawn(async move { follow(&mut client, &id, 0).await })
    };
    let cancelled = client
        .cancel_pipeline_run(CancelPipelineRunRequest {
            run_id: run.id.clone(),
        })
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(cancelled.id, run.id);
    // Both followers' streams end (completed: the run ended and every entry was sent),
    // long before the stage's `sleep 600` would have.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut rest = Vec::new();
        while let Some(message) = stream.message().await? {
            rest.extend(message.entry);
        }
        Ok::<_, tonic::Status>(rest)
    })
    .await??;
    let (whole, end) = tokio::time::timeout(Duration::from_secs(60), follower).await??;
    end?;
    assert!(whole.ends_with(&rest), "the same log");
    let finished = get(&mut client, &run.id).await;
    assert_eq!(finished.status(), RunStatus::Cancelled, "{finished:?}");
    let statuses: Vec<(String, StageStatus)> = finished
        .stages
        .iter()
        .map(|s| (s.stage_id.clone(), s.status()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("work".to_owned(), StageStatus::Cancelled),
            ("later".to_owned(), StageStatus::Cancelled),
        ]
    );
    assert!(finished.finished_at.is_some());

    // Cancelling a finished run changes nothing and returns it as it is.
    let again = client
        .cancel_pipeline_run(CancelPipelineRunRequest {
            run_id: run.id.clone(),
        })
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(again, finished);
    let (c, m) = code(
        client
            .cancel_pipeline_run(CancelPipelineRunRequest {
                run_id: "0191b3c4-5d6e-7f80-91a2-b3c4d5e6f708".to_owned(),
            })
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::NotFound, "{m}");
    let (c, m) = code(
        client
            .cancel_pipeline_run(CancelPipelineRunRequest {
                run_id: "nope".to_owned(),
            })
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("run_id"), "{m}");
    Ok(())
}

const APPROVAL: &str = "engine: \"1\"
pipeline:
  name: approvals
  stages:
    build:
      run: echo built
    deploy:
      after: build
      run: echo deployed
      gate:
        approval: required
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_lets_a_waiting_stage_proceed_and_records_the_token_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let repo = repo(dir.path(), APPROVAL);
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci-bot s3cret\nalice 4lice-t0ken\n")?;
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--repo",
            &format!("app={}", repo.display()),
            "--token-file",
            tokens.to_str().ok_or("path")?,
        ],
    );
    let mut client = server.client().await;
    let run = client
        .trigger_pipeline(authed(trigger("app", "main"), "s3cret"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    let get_authed = |run: &str| {
        authed(
            GetPipelineRunRequest {
                run_id: run.to_owned(),
            },
            "s3cret",
        )
    };
    let current = |client: &mut PipelineServiceClient<Channel>, run: String| {
        let request = get_authed(&run);
        let mut client = client.clone();
        async move {
            client
                .get_pipeline_run(request)
                .await
                .map(|r| r.into_inner().run.unwrap_or_default())
        }
    };
    // Wait for the stage to wait: its log says so, then its state is committed.
    let mut stream = client
        .stream_logs(authed(logs(&run.id, 0), "s3cret"))
        .await?
        .into_inner();
    while let Some(message) = stream.message().await? {
        let entry = message.entry.ok_or("entry missing")?;
        if entry.stage_id.as_deref() == Some("deploy")
            && entry.message.contains("waiting for approval")
        {
            break;
        }
    }
    let start = std::time::Instant::now();
    let waiting = loop {
        let now = current(&mut client, run.id.clone()).await?;
        if now.stages[1].status() == StageStatus::WaitingForApproval {
            break now;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(waiting.status(), RunStatus::Running);
    assert_eq!(waiting.stages[1].approved_by, None);

    let approve = |stage: &str, token: &str| {
        authed(
            ApprovePipelineStageRequest {
                run_id: run.id.clone(),
                stage_id: stage.to_owned(),
            },
            token,
        )
    };
    // A stage without an approval gate, and a stage the run does not have.
    let (c, m) = code(
        client
            .approve_pipeline_stage(approve("build", "s3cret"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    let (c, m) = code(
        client
            .approve_pipeline_stage(approve("nope", "s3cret"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::NotFound, "{m}");
    let (c, _) = code(
        client
            .approve_pipeline_stage(approve("deploy", "wrong"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::Unauthenticated);

    let approved = client
        .approve_pipeline_stage(approve("deploy", "4lice-t0ken"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    let deploy = &approved.stages[1];
    assert_eq!(deploy.approved_by.as_deref(), Some("alice"));
    let approved_at = deploy.approved_at.ok_or("approved_at unset")?;

    let (_, end) = follow_request(&mut client, authed(logs(&run.id, 0), "s3cret")).await;
    end?;
    let finished = current(&mut client, run.id.clone()).await?;
    assert_eq!(finished.status(), RunStatus::Succeeded, "{finished:?}");
    let deploy = &finished.stages[1];
    assert_eq!(deploy.status(), StageStatus::Succeeded);
    assert_eq!(deploy.approved_by.as_deref(), Some("alice"));
    assert_eq!(deploy.approved_at, Some(approved_at));
    assert_eq!(finished.stages[0].approved_by, None, "build had no gate");
    // A list page shows the run exactly as GetPipelineRun does, approval included.
    let page = client
        .list_pipeline_runs(authed(list(None, &[], 10, ""), "s3cret"))
        .await?
        .into_inner();
    assert_eq!(page.runs, vec![finished.clone()]);

    // Approving again is a no-op that returns the run; a stage that ended unapproved can no
    // longer be approved.
    let again = client
        .approve_pipeline_stage(approve("deploy", "s3cret"))
        .await?
        .into_inner()
        .run
        .ok_or("run missing")?;
    assert_eq!(again.stages[1].approved_by.as_deref(), Some("alice"));
    let (c, m) = code(
        client
            .approve_pipeline_stage(approve("build", "s3cret"))
            .await,
    )
    .ok_or("accepted")?;
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("build"), "{m}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_orders_and_pages_over_the_wire() -> TestResult {
    let dir = tempfile::tempdir()?;
    let app = repo(&dir.path().join("app"), QUICK);
    let bad = repo(
        &dir.path().join("bad"),
        "engine: \"1\"\npipeline:\n  name: bad\n  stages:\n    fail:\n      run: exit 3\n",
    );
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--repo",
            &format!("app={}", app.display()),
            "--repo",
            &format!("bad={}", bad.display()),
        ],
    );
    let mut client = server.client().await;
    let mut triggered = Vec::new();
    for repository in ["app", "bad", "app", "bad", "app"] {
        let run = start_run(&mut client, trigger(repository, "main")).await?;
        let (_, end) = follow(&mut client, &run.id, 0).await;
        end?;
        triggered.push((repository, run.id));
    }
    let newest_first = |filter: &dyn Fn(&str) -> bool| -> Vec<String> {
        triggered
            .iter()
            .rev()
            .filter(|(repository, _)| filter(repository))
            .map(|(_, id)| id.clone())
            .collect()
    };
    let ids = |runs: &[PipelineRun]| runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    for size in [1, 2, 4, 0] {
        let runs = all_pages(&mut client, None, &[], size).await?;
        assert_eq!(ids(&runs), newest_first(&|_| true), "page size {size}");
    }
    let runs = all_pages(&mut client, Some("bad"), &[], 1).await?;
    assert_eq!(ids(&runs), newest_first(&|r| r == "bad"));
    let failed = all_pages(&mut client, None, &[RunStatus::Failed], 2).await?;
    assert_eq!(ids(&failed), newest_first(&|r| r == "bad"));
    assert!(failed.iter().all(|r| r.status() == RunStatus::Failed));
    let both = all_pages(
        &mut client,
        Some("app"),
        &[RunStatus::Succeeded, RunStatus::Cancelled],
        2,
    )
    .await?;
    assert_eq!(ids(&both), newest_first(&|r| r == "app"));
    assert!(
        all_pages(&mut client, Some("app"), &[RunStatus::Failed], 2)
            .await?
            .is_empty()
    );

    // Bad requests name the field.
    let first = client
        .list_pipeline_runs(list(None, &[], 2, ""))
        .await?
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    for (request, field) in [
        (list(None, &[], 2, "not-a-token"), "page_token"),
        (
            list(Some("bad"), &[], 2, &first.next_page_token),
            "page_token",
        ),
        (list(None, &[], -1, ""), "page_size"),
        (list(None, &[RunStatus::Unspecified], 2, ""), "status[0]"),
    ] {
        let (c, m) = code(client.list_pipeline_runs(request).await).ok_or("accepted")?;
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains(field), "{field}: {m}");
    }
    Ok(())
}
