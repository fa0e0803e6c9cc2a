"""util/verify: checks workspace files against a sha256sum/sha512sum manifest.

A LabHit extension written in Python and built into a component with componentize-py
against `wit/` (world `extension`). The checking logic is in `verify.py`, which needs only
the standard library, so it is unit-tested with a plain `python3` (`test_verify.py`);
this file only translates between the WIT types and that logic.
"""

import verify
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import cancellation, log, types


def _log(level, message, fields=()):
    log.log(level, message, list(fields))


class PipelineStep(exports.PipelineStep):
    def execute(self, input: types.StepInput) -> types.StepOutput:
        try:
            config = verify.Config.parse(input.config)
        except verify.ConfigError as err:
            raise Err(types.StepError_InvalidConfig(str(err)))
        if input.workspace_access == types.WorkspaceAccess.NONE:
            raise Err(types.StepError_Internal("no workspace: the manifest grants `filesystem`"))
        workspace = verify.Workspace(input.workspace)
        try:
            results = verify.check(
                workspace, config, cancelled=cancellation.is_cancelled
            )
        except verify.Cancelled as err:
            raise Err(types.StepError_Cancelled(str(err)))
        except verify.Failure as err:
            raise Err(types.StepError_Failed(str(err)))

        for result in results:
            if result.status == verify.OK:
                _log(log.Level.DEBUG, f"ok {result.path}")
            else:
                _log(
                    log.Level.ERROR,
                    f"{result.status.lower()} {result.path}",
                    [("expected", result.expected), ("actual", result.actual or "")],
                )
        counts = verify.count(results)
        _log(
            log.Level.INFO,
            f"verified {counts['files']} file(s) against {config.manifest}: "
            f"{counts['ok']} ok, {counts['failed']} failed, {counts['missing']} missing",
        )

        artifacts = []
        if config.report is not None:
            try:
                size = workspace.write(config.report, verify.report(results))
            except verify.Failure as err:
                raise Err(types.StepError_Failed(str(err)))
            artifacts.append(types.Artifact(config.report, "text/plain", size))

        bad = counts["failed"] + counts["missing"]
        return types.StepOutput(
            exit_code=1 if bad else 0,
            outputs=[(name, str(value)) for name, value in counts.items()],
            artifacts=artifacts,
            committed_snapshot=None,
        )
