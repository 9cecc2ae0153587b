"""Find Java and fetch the Kafka jars once into the cache with Maven.

Why Maven and not the Kafka tarball: Maven Central is reachable almost everywhere
(corporate mirrors included), artifacts are checksummed, and ``dependency:copy-dependencies``
gives exactly the runtime classpath of the broker. The jars land in
``<home>/kafka-<version>/libs`` and a marker file is written only after the copy finished,
so an interrupted download is redone on the next start.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ._util import file_lock
from .errors import BrokerError

#: The Apache Kafka release the embedded broker runs. Bumping it re-fetches into a new dir.
KAFKA_VERSION = "4.3.1"
#: log4j2 binding for slf4j 1.x: Kafka 4.x still logs through slf4j-api 1.7, so the
#: slf4j2 binding would be ignored and the broker would log nothing.
LOG4J_VERSION = "2.24.3"
MIN_JAVA = 17
_MARKER = ".complete"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default progress sink: say nothing (library use, pytest)."""


def pipeline_home() -> Path:
    """The cache root: ``$PIPELINE_HOME`` or ``~/.cache/pipeline`` (resolved, so pids match)."""
    raw = os.environ.get("PIPELINE_HOME") or str(Path.home() / ".cache" / "pipeline")
    return Path(raw).expanduser().resolve()


def kafka_dir(home: Path) -> Path:
    """Where this Kafka version's jars and fetch pom live."""
    return home / f"kafka-{KAFKA_VERSION}"


def libs_dir(home: Path) -> Path:
    """The broker's classpath directory."""
    return kafka_dir(home) / "libs"


def classpath(home: Path) -> str:
    """A JVM classpath wildcard covering every fetched jar."""
    return str(libs_dir(home) / "*")


def find_java() -> str:
    """Path of the ``java`` to use: ``$JAVA_HOME/bin/java`` if present, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise BrokerError(
            f"Java {MIN_JAVA} or newer is needed to run the embedded Kafka broker, but `java` was not found "
            "on PATH (nor in $JAVA_HOME). Install a JRE/JDK 17+ (e.g. `apt-get install openjdk-17-jre-headless` "
            "or `brew install openjdk@17`), or set PIPELINE_BOOTSTRAP_SERVERS to use an existing Kafka cluster."
        )
    return found


@functools.lru_cache(maxsize=8)
def java_major(java: str) -> int:
    """Major version of ``java`` (8 for '1.8.0_x', 17 for '17.0.15'), parsed from ``-version``."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BrokerError(f"could not run `{java} -version`: {exc}") from exc
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise BrokerError(f"could not read the Java version from `{java} -version`:\n{text.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """The java executable, after checking it is new enough for Kafka 4.x (Java 17+)."""
    java = find_java()
    major = java_major(java)
    if major < MIN_JAVA:
        raise BrokerError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer, but {java} is Java {major}. "
            "Install Java 17+ and put it first on PATH or point JAVA_HOME at it."
        )
    return java


def fetch_pom(*, tools: bool = False) -> str:
    """A throwaway pom whose runtime dependencies are exactly the broker's classpath (with ``tools``, plus the
    command-line tools' ``kafka-tools``: kafka-topics and friends, for the container image of deploy/)."""
    deps = [
        ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    ]
    if tools:
        deps.append(("org.apache.kafka", "kafka-tools", KAFKA_VERSION))
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.pipeline</groupId><artifactId>kafka-fetch</artifactId>"
        f"<version>{KAFKA_VERSION}</version><packaging>pom</packaging>\n"
        f"  <dependencies>\n{body}\n  </dependencies>\n</project>\n"
    )


def tools_libs_dir(home: Path) -> Path:
    """The classpath of the broker plus the command-line tools (kafka-tools), fetched only for container images."""
    return kafka_dir(home) / "tools-libs"


def jars_present(home: Path, *, tools: bool = False) -> bool:
    """True if a previous fetch completed (marker written after the copy) and the jars are there."""
    libs = tools_libs_dir(home) if tools else libs_dir(home)
    marker = kafka_dir(home) / (_MARKER + "-tools" if tools else _MARKER)
    return marker.is_file() and any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar"))


def ensure_kafka(home: Path | None = None, progress: Progress = _quiet, *, tools: bool = False) -> Path:
    """Make sure the Kafka jars are in the cache, fetching them once; returns the libs dir (``tools``: the broker's
    jars and kafka-tools', in a dir of their own; the embedded broker never needs them)."""
    home = home or pipeline_home()
    if jars_present(home, tools=tools):
        return tools_libs_dir(home) if tools else libs_dir(home)
    with file_lock(kafka_dir(home) / ".lock"):
        if not jars_present(home, tools=tools):  # else another process fetched while we waited for the lock
            _fetch(home, progress, tools=tools)
    return tools_libs_dir(home) if tools else libs_dir(home)


def _fetch(home: Path, progress: Progress, *, tools: bool = False) -> None:
    """Run Maven into a temporary dir, then move it into place and write the marker."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            f"Maven (`mvn`) is needed once to download Apache Kafka {KAFKA_VERSION} from Maven Central into "
            f"{libs_dir(home)}, but it is not on PATH. Install Maven 3.6+ (e.g. `apt-get install maven`), "
            "or set PIPELINE_BOOTSTRAP_SERVERS to use an existing Kafka cluster."
        )
    kdir = kafka_dir(home)
    libs = tools_libs_dir(home) if tools else libs_dir(home)
    partial, marker = libs.with_name(libs.name + ".partial"), kdir / (_MARKER + "-tools" if tools else _MARKER)
    for stale in (partial, libs):
        shutil.rmtree(stale, ignore_errors=True)
    marker.unlink(missing_ok=True)
    pom = kdir / ("fetch-tools-pom.xml" if tools else "fetch-pom.xml")
    pom.write_text(fetch_pom(tools=tools))
    progress(f"Downloading Apache Kafka {KAFKA_VERSION} jars with Maven into {libs} (once)")
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    _run_mvn(cmd, kdir)
    if not any(partial.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise BrokerError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {partial}")
    partial.rename(libs)
    marker.write_text(f"kafka {KAFKA_VERSION}\n")


def _run_mvn(cmd: list[str], cwd: Path) -> None:
    """Run Maven; on failure raise with the last lines of its output, which name the cause."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError("Maven did not finish downloading Kafka within 30 minutes") from exc
    except OSError as exc:
        raise BrokerError(f"could not run Maven: {exc}") from exc
    if out.returncode != 0:
        lines = (out.stdout + out.stderr).strip().splitlines()[-25:]
        raise BrokerError(
            f"Maven failed (exit {out.returncode}) downloading Apache Kafka {KAFKA_VERSION} from Maven Central. "
            "Check network access / proxy settings (~/.m2/settings.xml). Last output:\n" + "\n".join(lines)
        )
