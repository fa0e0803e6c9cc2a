"""Unit tests of verify.py with a plain python3 (standard library only):

    python3 -m unittest discover -s extensions/util/verify

`cargo xtask ci` runs them; the component itself is tested end to end by
`crates/labhit-cli/tests/python.rs`.
"""

import hashlib
import tempfile
import unittest

import verify


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ConfigTest(unittest.TestCase):
    def test_defaults_and_errors_name_the_key(self):
        config = verify.Config.parse('{"manifest": "SHA256SUMS"}')
        self.assertEqual(config, verify.Config("SHA256SUMS", "sha256", None))
        for text, message in [
            ("[]", "expected a mapping"),
            ("{}", "missing key `manifest`"),
            ('{"manifest": "a", "reprot": "b"}', "unknown key `reprot`"),
            ('{"manifest": 1}', "at `manifest`: expected a non-empty string"),
            ('{"manifest": "a", "algorithm": "md5"}', "`md5` is not one of"),
            ('{"manifest": "../a"}', "at `manifest`"),
            ('{"manifest": "/etc/passwd"}', "at `manifest`"),
        ]:
            with self.subTest(text=text):
                with self.assertRaises(verify.ConfigError) as caught:
                    verify.Config.parse(text)
                self.assertIn(message, str(caught.exception))


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.workspace = verify.Workspace(self.dir.name)

    def tearDown(self):
        self.dir.cleanup()

    def test_ok_failed_and_missing(self):
        self.workspace.write("dist/a.txt", "a\n")
        self.workspace.write("dist/b.txt", "changed\n")
        self.workspace.write(
            "SUMS",
            f"{sha256('a' + chr(10))}  dist/a.txt\n"
            f"{sha256('b' + chr(10))}  dist/b.txt\n"
            f"{sha256('c')} *dist/c.txt\n",
        )
        results = verify.check(self.workspace, verify.Config("SUMS"))
        self.assertEqual(
            [(r.path, r.status) for r in results],
            [("dist/a.txt", "OK"), ("dist/b.txt", "FAILED"), ("dist/c.txt", "MISSING")],
        )
        self.assertEqual(
            verify.count(results), {"files": 3, "ok": 1, "failed": 1, "missing": 1}
        )
        self.assertEqual(
            verify.report(results),
            "dist/a.txt: OK\ndist/b.txt: FAILED\ndist/c.txt: MISSING\n",
        )

    def test_malformed_lines_name_file_and_line(self):
        for text, message in [
            ("", "SUMS lists no files"),
            (f"{sha256('a')}  a\nnot a digest\n", "SUMS:2: expected `<64 hex digits>  <path>`"),
            (f"{sha256('a')}  ../a\n", "SUMS:1: `../a` is not a path inside the workspace"),
        ]:
            with self.subTest(text=text):
                self.workspace.write("SUMS", text)
                with self.assertRaises(verify.Failure) as caught:
                    verify.check(self.workspace, verify.Config("SUMS"))
                self.assertIn(message, str(caught.exception))

    def test_a_missing_manifest_fails_naming_it(self):
        with self.assertRaises(verify.Failure) as caught:
            verify.check(self.workspace, verify.Config("SUMS"))
        self.assertIn("cannot read `SUMS`", str(caught.exception))

    def test_cancellation_stops_between_files(self):
        self.workspace.write("a", "a")
        self.workspace.write("SUMS", f"{sha256('a')}  a\n")
        with self.assertRaises(verify.Cancelled) as caught:
            verify.check(self.workspace, verify.Config("SUMS"), cancelled=lambda: True)
        self.assertIn("after 0 of 1 files", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
