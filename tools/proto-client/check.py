#!/usr/bin/env python3
"""A gRPC client generated from proto/labhit/v1/pipeline.proto alone, against the real server.

Compiles the .proto with grpcio-tools (not the Rust stubs), starts `labhit serve` on
127.0.0.1:0 with a temporary git repository registered, triggers a one-stage pipeline,
streams its log to the end and checks the final status; also checks two refusals
(an unregistered repository is PERMISSION_DENIED, an unknown ref NOT_FOUND).

Usage (cargo xtask ci runs it after building the extensions):
    $(tools/venv-install.sh proto-client) tools/proto-client/check.py \
        --labhit target/debug/labhit --extensions target/extensions

Every wait is bounded by a gRPC deadline or a process timeout; nothing sleeps.
"""

import argparse
import importlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
MESSAGE = "hello from the generated client"
PIPELINE = f"""engine: "1"
pipeline:
  name: proto-client
  stages:
    hello:
      use: exec/sh@^0.1
      run: |
        echo "{MESSAGE}"
"""


def compile_proto(out: pathlib.Path):
    """Generates the Python messages and stubs into `out` and imports them."""
    from grpc_tools import protoc
    import grpc_tools

    includes = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)  # protoc writes into it but does not create it
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{includes}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "labhit/v1/pipeline.proto",
        ]
    )
    if code != 0:
        raise SystemExit(f"proto-client: protoc failed with {code}")
    sys.path.insert(0, str(out))
    pb2 = importlib.import_module("labhit.v1.pipeline_pb2")
    grpc_pb2 = importlib.import_module("labhit.v1.pipeline_pb2_grpc")
    return pb2, grpc_pb2


def git(repo: pathlib.Path, *args: str) -> None:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
    )
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repo(repo: pathlib.Path) -> None:
    (repo / ".labhit").mkdir(parents=True)
    (repo / ".labhit" / "pipeline.yaml").write_text(PIPELINE)
    git(repo, "init", "--quiet", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "pipeline")


def start_server(args, tmp: pathlib.Path, repo: pathlib.Path):
    """Starts `labhit serve` and returns (process, address) from its first stdout line."""
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen(
        [
            str(args.labhit),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp / "data"),
            "--repo",
            f"demo={repo}",
            "--extensions",
            str(args.extensions),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    first = server.stdout.readline().decode("utf-8", "replace").rstrip("\n")
    match = re.fullmatch(r"listening on (127\.0\.0\.1:\d+)", first)
    if not match:
        server.kill()
        server.wait()
        raise AssertionError(
            f"first stdout line of labhit serve is {first!r}, expected 'listening on 127.0.0.1:PORT'; "
            f"server log:\n{(tmp / 'server.log').read_text(errors='replace')}"
        )
    return server, match.group(1)


def check(pb2, grpc_pb2, address: str) -> int:
    import grpc

    passed = 0
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = grpc_pb2.PipelineServiceStub(channel)

        # Refusals come back with the documented status codes.
        for request, code in [
            (pb2.TriggerPipelineRequest(repository="/etc", git_ref="main"), grpc.StatusCode.PERMISSION_DENIED),
            (pb2.TriggerPipelineRequest(repository="demo", git_ref="no-such-branch"), grpc.StatusCode.NOT_FOUND),
        ]:
            try:
                stub.TriggerPipeline(request, timeout=60)
            except grpc.RpcError as err:
                assert err.code() == code, f"{request}: {err.code()} {err.details()}"
            else:
                raise AssertionError(f"{request}: accepted, expected {code}")
            passed += 1

        run = stub.TriggerPipeline(
            pb2.TriggerPipelineRequest(repository="demo", git_ref="main"), timeout=60
        ).run
        assert run.id, "the run has no id"
        assert run.pipeline_name == "proto-client", run.pipeline_name
        assert len(run.commit) == 40, run.commit

        entries = [
            response.entry
            for response in stub.StreamLogs(pb2.StreamLogsRequest(run_id=run.id), timeout=300)
        ]
        sequences = [entry.sequence for entry in entries]
        assert sequences == list(range(len(entries))), f"sequences are not 0..n-1: {sequences}"
        assert all(entry.run_id == run.id for entry in entries)
        assert any(MESSAGE in entry.message for entry in entries), [e.message for e in entries]
        passed += 1

        final = stub.GetPipelineRun(pb2.GetPipelineRunRequest(run_id=run.id), timeout=60).run
        assert final.status == pb2.RUN_STATUS_SUCCEEDED, pb2.RunStatus.Name(final.status)
        assert [s.stage_id for s in final.stages] == ["hello"], final.stages
        assert final.stages[0].status == pb2.STAGE_STATUS_SUCCEEDED, final.stages[0]
        assert final.HasField("finished_at")

        # A resumed stream from the middle gets exactly the rest.
        middle = len(entries) // 2
        rest = [
            response.entry.sequence
            for response in stub.StreamLogs(
                pb2.StreamLogsRequest(run_id=run.id, cursor=middle), timeout=60
            )
        ]
        assert rest == sequences[middle:], f"resumed at {middle}: {rest}"
        passed += 1
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labhit", type=pathlib.Path, required=True, help="the labhit binary")
    parser.add_argument("--extensions", type=pathlib.Path, required=True, help="built extension bundles (exec/sh)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labhit-proto-client-") as tmp:
        tmp = pathlib.Path(tmp)
        pb2, grpc_pb2 = compile_proto(tmp / "gen")
        repo = tmp / "repo"
        make_repo(repo)
        server, address = start_server(args, tmp, repo)
        failed = 0
        passed = 0
        try:
            passed = check(pb2, grpc_pb2, address)
        except Exception as err:  # reported below with the server's log
            failed = 1
            print(f"proto-client: FAILED: {type(err).__name__}: {err}", file=sys.stderr)
            print((tmp / "server.log").read_text(errors="replace")[-8000:], file=sys.stderr)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                print("proto-client: FAILED: labhit serve did not exit within 60s of SIGTERM", file=sys.stderr)
                failed = 1
        print(f"proto-client: {passed} passed, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
