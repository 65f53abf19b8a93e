"""Bad invocations of ``scrapy crawl imagesearch`` the issue lists that tests/spiders/test_spider_imagesearch.py
leaves out.

Each must end with one line saying what to fix, exit non-zero, send no call to the gateway and
print no traceback. Manifests saved by Excel with a BOM or in GBK must be read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import REPO, CrawlRun, load_dataset, run_crawl, write_seed_photos

from sandbox.testing import SandboxProcess

PREFIX = "scrapy crawl imagesearch: error: "


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess("--page-size", "5", "--max-results", "5") as process:
        yield process


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    (written,) = write_seed_photos(tmp_path / "photos", 1)
    return shutil.move(written, tmp_path / "p.jpg")


def _assert_refused_in_one_line(result: CrawlRun, sandbox: SandboxProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.tail()
    errors = [line for line in result.stderr.splitlines() if " error: " in line or " ERROR: " in line]
    assert len(errors) == 1, result.tail()
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last == errors[0] and last.startswith(PREFIX), result.tail()
    # Nothing of Scrapy's start-up banner ("Scrapy 2.19.0 started", its versions) before it.
    assert "[scrapy.utils.log]" not in result.stderr and "'Twisted':" not in result.stderr, result.tail()
    for fragment in fragments:
        assert fragment in last, result.tail()
    assert "Traceback" not in result.stderr
    assert sandbox.stats()["calls"]["total"] == 0


def test_no_seeds_argument_at_all(tmp_path: Path, sandbox: SandboxProcess) -> None:
    sandbox.reset()
    result = run_crawl(None, dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "no seeds given", "-a seeds=")


def test_seeds_of_only_separators(tmp_path: Path, sandbox: SandboxProcess) -> None:
    sandbox.reset()
    result = run_crawl(" , ,", dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "no seeds given")


def test_pages_zero(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    sandbox.reset()
    result = run_crawl(str(photo), "-a", "pages=0", dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "pages='0' is not a positive whole number")


def test_unknown_sign_method_from_the_environment(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    sandbox.reset()
    result = run_crawl(str(photo), dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint,
                       env={"IMAGESEARCH_SIGN_METHOD": "sha1"})
    _assert_refused_in_one_line(result, sandbox, "IMAGESEARCH_SIGN_METHOD='sha1'", "md5, hmac, hmac-sha256")


@pytest.mark.parametrize("where", ["below-a-file", "is-a-file"])
def test_unwritable_dataset_dir_sends_no_call(tmp_path: Path, sandbox: SandboxProcess, photo: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("x")
    target = tmp_path / "a-file" / "datasets" if where == "below-a-file" else tmp_path / "a-file"
    sandbox.reset()
    result = run_crawl(str(photo), dataset_dir=target, endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, f"DATASET_DIR='{target}' cannot be written", "-s DATASET_DIR=PATH")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_dataset_dir_sends_no_call(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    sandbox.reset()
    try:
        result = run_crawl(str(photo), dataset_dir=read_only / "datasets", endpoint=sandbox.endpoint)
    finally:
        read_only.chmod(0o700)
    _assert_refused_in_one_line(result, sandbox, "cannot be written")


# -- manifests as Excel saves them -----------------------------------------------------------------

def test_manifest_with_a_utf8_bom_is_read(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    manifest = tmp_path / "seeds.csv"
    manifest.write_bytes("image,seed_id\np.jpg,bom-seed\n".encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    sandbox.reset()
    result = run_crawl(str(manifest), "-a", "pages=1", dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    assert result.returncode == 0, result.tail()
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert seeds["seed_id"].tolist() == ["bom-seed"] and seeds["status"].tolist() == ["ok"]
    assert sandbox.stats()["calls"]["total"] == 1


def test_gbk_manifest_without_an_image_column_names_its_columns_readably(
    tmp_path: Path, sandbox: SandboxProcess,
) -> None:
    manifest = tmp_path / "seeds.csv"
    manifest.write_bytes("图片,编号\np.jpg,x\n".encode("gbk"))  # Excel on Chinese Windows, Chinese headers
    sandbox.reset()
    result = run_crawl(str(manifest), dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "has no 'image' column", "图片, 编号", "add a header row")


def test_utf16_manifest_is_refused_with_how_to_save_it(tmp_path: Path, sandbox: SandboxProcess) -> None:
    # Excel's "Unicode Text" is UTF-16 with tabs: not a CSV the spider reads, and it says so.
    manifest = tmp_path / "seeds.csv"
    manifest.write_bytes("image\tseed_id\r\np.jpg\tu16\r\n".encode("utf-16"))
    sandbox.reset()
    result = run_crawl(str(manifest), dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "is neither UTF-8 nor GBK/GB18030", "CSV UTF-8")


def test_empty_manifest(tmp_path: Path, sandbox: SandboxProcess) -> None:
    manifest = tmp_path / "seeds.csv"
    manifest.write_bytes(b"")
    sandbox.reset()
    result = run_crawl(str(manifest), dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "has no 'image' column")


# -- settings given with -s ------------------------------------------------------------------------

BAD_SETTINGS = {
    # setting: what the one line must say
    "DATASET_RUN_ID=../../etc": "unsafe run id",
    "DATASET_RUN_ID=/abs": "unsafe run id",
    "DATASET_RUN_ID=a/b": "unsafe run id",
    "DATASET_RUN_ID=.hidden": "unsafe run id",
    "DATASET_RUN_DATE=../x": "DATASET_RUN_DATE='../x'",
    "DATASET_RUN_DATE=2026-13-01": "DATASET_RUN_DATE='2026-13-01'",
    "DATASET_FORMATS=../csv": "choose one or more of parquet, csv",
    "DATASET_FORMATS=xml": "choose one or more of parquet, csv",
    "DATASET_BATCH_ITEMS=abc": "DATASET_BATCH_ITEMS='abc' is not a whole number >= 0",
    "PARQUET_ROW_GROUP_SIZE=0": "PARQUET_ROW_GROUP_SIZE='0' is not a positive whole number",
    "PARQUET_COMPRESSION=lzma9": "PARQUET_COMPRESSION='lzma9' is not a codec pyarrow has",
    "IMAGESEARCH_QUOTA=abc": "IMAGESEARCH_QUOTA='abc': expected CALLS/SECONDS",
    "IMAGESEARCH_QUOTA_MARGIN=x": "IMAGESEARCH_QUOTA_MARGIN='x' is not a number of seconds",
    "IMAGESEARCH_QUOTA_MARGIN=inf": "IMAGESEARCH_QUOTA_MARGIN='inf' is not a number of seconds",  # hung once
    "IMAGESEARCH_RETRY_BACKOFF_MAX=Infinity": "IMAGESEARCH_RETRY_BACKOFF_MAX='Infinity' is not a number of seconds",
    "LOG_LEVEL=BOGUS": "LOG_LEVEL='BOGUS' is not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    "IMAGESEARCH_QUOTA_STORE=nope.Store": "IMAGESEARCH_QUOTA_STORE='nope.Store' cannot be imported",
    "IMAGESEARCH_GATEWAY=nope.Gateway": "IMAGESEARCH_GATEWAY='nope.Gateway' is neither top nor onebound",
    "IMAGESEARCH_RETRY_BACKOFF=-1": "IMAGESEARCH_RETRY_BACKOFF='-1' is not a number of seconds >= 0",
    "IMAGESEARCH_THROTTLE_MAX_TIMES=abc": "IMAGESEARCH_THROTTLE_MAX_TIMES='abc'",
    "CONCURRENT_REQUESTS=abc": "CONCURRENT_REQUESTS='abc' is not a positive whole number",
    "RETRY_TIMES=abc": "RETRY_TIMES='abc' is not a whole number >= 0",
    "IMAGESEARCH_SANDBOX_ARGS=--bogus": "IMAGESEARCH_SANDBOX_ARGS=['--bogus']",
    "IMAGESEARCH_APP_KEY=": "IMAGESEARCH_APP_KEY is empty",
    "IMAGESEARCH_APP_SECRET= ": "IMAGESEARCH_APP_SECRET is empty",
    "PROGRESS_INTERVAL=0": "PROGRESS_INTERVAL='0': give the seconds between progress lines, a number > 0",
    "PROGRESS_MODE=fancy": "PROGRESS_MODE='fancy': use one of auto, bar, log",
    "REPORT_PAGE_SEEDS=0": "REPORT_PAGE_SEEDS='0' is not a positive whole number",
}


@pytest.mark.parametrize("setting", list(BAD_SETTINGS))
def test_bad_setting_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, sandbox: SandboxProcess, photo: Path, setting: str,
) -> None:
    sandbox.reset()
    # IMAGESEARCH_SANDBOX_ARGS only counts for the embedded sandbox; every other case points at the test sandbox.
    endpoint = "sandbox" if setting.startswith("IMAGESEARCH_SANDBOX_ARGS=") else sandbox.endpoint
    result = run_crawl(str(photo), "-s", setting, dataset_dir=tmp_path / "datasets", endpoint=endpoint)
    _assert_refused_in_one_line(result, sandbox, BAD_SETTINGS[setting])
    assert not (tmp_path / "datasets").exists()
    assert not (tmp_path / "etc").exists() and not Path("/abs").exists()


@pytest.mark.parametrize("endpoint", ["ftp://gateway.example/router/rest", "eco.taobao.com/router/rest", "https://"])
def test_endpoint_that_is_not_an_http_url(tmp_path: Path, sandbox: SandboxProcess, photo: Path, endpoint: str) -> None:
    sandbox.reset()
    result = run_crawl(str(photo), dataset_dir=tmp_path / "datasets", endpoint=endpoint)
    _assert_refused_in_one_line(
        result, sandbox, f"IMAGESEARCH_ENDPOINT={endpoint!r} is neither 'sandbox' nor an http(s) URL"
    )


def test_empty_dataset_dir_is_refused_rather_than_writing_into_the_working_directory(
    tmp_path: Path, sandbox: SandboxProcess, photo: Path,
) -> None:
    sandbox.reset()
    result = run_crawl(str(photo), dataset_dir="", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "DATASET_DIR is empty")
    assert not [p for p in ("_manifests", "_staging", "parquet", "csv") if (REPO / p).exists()]


def test_misspelt_spider_argument(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    sandbox.reset()
    result = run_crawl(str(photo), "-a", "page=2", dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, "unknown argument -a page=...", "-a pages=N")


def test_a_secret_that_is_not_utf8_is_refused_without_showing_it(
    tmp_path: Path, sandbox: SandboxProcess, photo: Path,
) -> None:
    """Bytes that are not UTF-8 in the environment cannot be signed: a settings error, the value unshown."""
    sandbox.reset()
    secret = "Zq8vSecretPart\udcff\udcfeTail"  # b"...\xff\xfe..." as Python keeps undecodable bytes
    result = run_crawl(str(photo), dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint,
                       env={"IMAGESEARCH_APP_KEY": "test", "IMAGESEARCH_APP_SECRET": secret})
    _assert_refused_in_one_line(
        result, sandbox, "IMAGESEARCH_APP_SECRET is not valid UTF-8 text (the value is not shown)"
    )
    assert "Zq8v" not in result.stderr + result.stdout and "Tail" not in result.stderr + result.stdout


def test_a_jobdir_an_earlier_version_started_is_refused_rather_than_paid_for_again(
    tmp_path: Path, sandbox: SandboxProcess, photo: Path,
) -> None:
    """Its journal keys calls another way: none would match, and every answer it holds be asked again."""
    sandbox.reset()
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    (jobdir / "gateway-journal.jsonl").write_text('{"key": "k", "method": "taobao.image.search", "body": "{}"}\n')
    result = run_crawl(str(photo), "-s", f"JOBDIR={jobdir}", dataset_dir=tmp_path / "datasets",
                       endpoint=sandbox.endpoint)
    _assert_refused_in_one_line(result, sandbox, f"JOBDIR {jobdir} was started by an earlier version",
                                f"remove {jobdir / 'gateway-journal.jsonl'} to start over")


def test_full_width_category_digits_are_read_as_digits(tmp_path: Path, sandbox: SandboxProcess, photo: Path) -> None:
    """``-a cat=１６`` as a Chinese input method types it is category 16 (the photo's product's), not a refusal."""
    sandbox.reset()
    result = run_crawl(str(photo), "-a", "cat=\uff11\uff16", "-a", "pages=1",
                       dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    assert result.returncode == 0, result.tail()
    tables = load_dataset(tmp_path / "datasets")
    assert tables["seeds"]["status"].tolist() == ["ok"], tables["seeds"].to_string()
    assert len(tables["matches"]) and tables["matches"]["cat"].eq("16").all(), tables["matches"].to_string()
    refused = run_crawl(str(photo), "-a", "cat=50O1", dataset_dir=tmp_path / "other", endpoint=sandbox.endpoint)
    sandbox.reset()
    _assert_refused_in_one_line(refused, sandbox, "cat='50O1' is not a category id: give digits 0-9")


def test_a_directory_scan_takes_what_pillow_opens_and_says_what_it_skips(
    tmp_path: Path, sandbox: SandboxProcess,
) -> None:
    from PIL import Image, features

    photos = tmp_path / "photos"
    written = write_seed_photos(photos, 3)
    with Image.open(written[1]) as image:
        image.load()
    written[1].unlink()
    names = {"a.jpg", "no-extension"}
    if features.check("avif"):
        image.save(photos / "b.avif", "AVIF")
        names.add("b.avif")
    else:
        image.save(photos / "b.png", "PNG")
        names.add("b.png")
    written[2].rename(photos / "no-extension")
    written[0].rename(photos / "a.jpg")
    (photos / "notes.txt").write_text("bought at the market", encoding="utf-8")
    (photos / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    sandbox.reset()
    result = run_crawl(str(photos), "-a", "pages=1", dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    assert result.returncode == 0, result.tail()
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert {Path(source).name for source in seeds["source"]} == names, seeds.to_string()
    assert seeds["status"].eq("ok").all(), seeds.to_string()
    assert "2 files skipped, not images Pillow can open: .DS_Store, notes.txt" in result.stderr, result.tail()
    assert result.stats["imagesearch/seeds/skipped_files"] == 2


def test_no_remote_control_server_or_job_file_unless_turned_on(
    tmp_path: Path, sandbox: SandboxProcess, photo: Path,
) -> None:
    """Scrapy's remote control runs code in the crawl, where the secret is: off by default.

    Turned on, it listens and writes a job file with its token (the case shows the check can fail).
    """
    jobs = tmp_path / "remote-control-jobs"
    options = ("-a", "pages=1", "-s", f"REMOTE_CONTROL_JOBS_DIR={jobs}", "-s", "LOG_LEVEL=DEBUG")
    sandbox.reset()
    default = run_crawl(str(photo), *options, dataset_dir=tmp_path / "default", endpoint=sandbox.endpoint)
    assert default.returncode == 0, default.tail()
    assert "Remote control" not in default.stderr and not jobs.exists(), default.tail()
    assert "scrapy.extensions.remote_control.RemoteControl" not in default.stderr

    turned_on = run_crawl(str(photo), *options, "-s", "REMOTE_CONTROL_ENABLED=True", dataset_dir=tmp_path / "on",
                          endpoint=sandbox.endpoint)
    assert turned_on.returncode == 0, turned_on.tail()
    assert "Remote control HTTP server listening" in turned_on.stderr, turned_on.tail()
