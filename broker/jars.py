"""The Apache Kafka jars for the local broker, resolved once through Maven into the home folder.

Kafka's binary tarball would be one big download from a mirror; Maven Central is what CI machines
already reach, and Maven resolves exactly the runtime class path of `kafka_2.13`. A tiny generated
pom plus `dependency:copy-dependencies` puts every jar in `<home>/kafka-<version>/libs`, which is then
used as `java -cp 'libs/*'`.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
# kafka_2.13 declares slf4j-api 1.7.x but no binding; slf4j-simple sends the broker's log to its stderr,
# which is redirected into the broker's log file, so a failed start can be diagnosed.
SLF4J_VERSION = "1.7.36"
# Written last, so a half-finished download (killed CI job, full disk) is never mistaken for a cache.
COMPLETE_MARKER = ".complete"

POM_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.chat-analytics</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""


class MissingToolError(RuntimeError):
    """Java or Maven is not installed, so the local broker cannot run."""


def kafka_dir(home: Path) -> Path:
    return home / f"kafka-{KAFKA_VERSION}"


def libs_dir(home: Path) -> Path:
    return kafka_dir(home) / "libs"


def is_cached(home: Path) -> bool:
    return (libs_dir(home) / COMPLETE_MARKER).is_file()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"`{name}` was not found on PATH. The local Kafka broker needs Java 17+ and Maven; "
            "alternatively set CHAT_ANALYTICS_BOOTSTRAP_SERVERS to an existing broker or run a Docker engine."
        )
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    # Two processes resolving (or starting) at once, e.g. make's prefetch and a stray pytest, must not interleave.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_libs(home: Path, *, quiet: bool = False) -> Path:
    """The folder of Kafka's runtime jars, downloading them through Maven on first use."""
    # Absolute, because Maven resolves relative paths against the pom's folder, not ours.
    home = home.resolve()
    target = libs_dir(home)
    if is_cached(home):
        return target
    with file_lock(home / f"kafka-{KAFKA_VERSION}.lock"):
        if is_cached(home):
            return target
        mvn = require_tool("mvn")
        kafka_dir(home).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=kafka_dir(home)))
        pom = kafka_dir(home) / "pom.xml"
        pom.write_text(POM_TEMPLATE.format(kafka=KAFKA_VERSION, scala=SCALA_VERSION, slf4j=SLF4J_VERSION))
        if not quiet:
            print(
                f"Fetching Apache Kafka {KAFKA_VERSION} jars through Maven into {target} (first use only)",
                file=sys.stderr,
            )
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"Maven could not resolve org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_VERSION} "
                f"(exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        (staging / COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def java_command() -> str:
    return require_tool("java")
