"""A real Confluent-compatible Schema Registry for the tests: Apicurio Registry, built once from Maven Central.

Why Apicurio, and why this version: Confluent's own registry is not on Maven Central, and Karapace is not on
PyPI. Apicurio Registry serves Confluent's REST API (``/apis/ccompat/v6``) and is published to Maven Central, but
only as the plain jar of a Quarkus application, which must be "augmented" by Quarkus's Maven plugin before it can
run. ``python -m pipeline.testing.registry`` (``make test`` runs it) does that once, into
``<PIPELINE_HOME>/apicurio-registry-<version>``: a throwaway pom that depends on the app jar, indexes it (the
2.1 jar carries no Jandex index, so without it Quarkus finds none of its REST resources) and runs the Quarkus
build. 2.1.5.Final is the newest release whose whole dependency tree resolves from Maven Central alone: later ones
need ``apicurio-registry-schema-util-provider`` or ``apicurio-common-app-components-config-index-deployment``
versions that were never published there, or a JSON-schema library from another repository.

It runs with its default in-memory storage (H2), on a free local port, started per test module (~15-30 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from ..broker._fetch import check_java, pipeline_home
from ..broker._util import file_lock
from .helpers import free_port

APICURIO_VERSION = "2.1.5.Final"
#: The Quarkus release Apicurio 2.1.5 was built with (its parent pom's quarkus.version): the augmentation must
#: use the same one.
QUARKUS_VERSION = "2.2.3.Final"
_MARKER = ".complete"
_JAR = "apicurio-registry-runner-1-runner.jar"
#: Where its Confluent-compatible API is served (v6 is the newest Apicurio 2.1 has; the client needs no more).
CCOMPAT_PATH = "/apis/ccompat/v6"


class RegistryError(RuntimeError):
    """The registry could not be built or started; the message says why (Maven's or the JVM's last lines)."""


def registry_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / f"apicurio-registry-{APICURIO_VERSION}"


def runner_pom() -> str:
    """The throwaway project that augments the published app jar into a runnable one."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pipeline</groupId>
  <artifactId>apicurio-registry-runner</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>io.apicurio</groupId><artifactId>apicurio-registry</artifactId>
        <version>{APICURIO_VERSION}</version><type>pom</type><scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId><version>{APICURIO_VERSION}</version>
      <exclusions>
        <!-- JSON Schema support comes from JitPack, not Maven Central; Avro needs none of it -->
        <exclusion><groupId>com.github.everit-org.json-schema</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
        <version>3.6.1</version>
        <executions>
          <execution>
            <!-- the app's own configuration, as its build would have it on the application's classpath -->
            <id>app-config</id><phase>generate-resources</phase><goals><goal>unpack</goal></goals>
            <configuration>
              <artifactItems><artifactItem>
                <groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId>
                <version>{APICURIO_VERSION}</version><includes>application.properties</includes>
              </artifactItem></artifactItems>
              <outputDirectory>${{project.build.outputDirectory}}</outputDirectory>
            </configuration>
          </execution>
        </executions>
      </plugin>
      <plugin>
        <groupId>io.quarkus</groupId><artifactId>quarkus-maven-plugin</artifactId><version>{QUARKUS_VERSION}</version>
        <extensions>true</extensions>
        <executions><execution><goals><goal>build</goal></goals></execution></executions>
      </plugin>
    </plugins>
  </build>
</project>
"""


def runner_jar(home: Path | None = None) -> Path:
    return registry_dir(home) / "target" / _JAR


def built(home: Path | None = None) -> bool:
    return (registry_dir(home) / _MARKER).is_file() and runner_jar(home).is_file()


def ensure_registry(home: Path | None = None) -> Path:
    """The runnable registry jar, built with Maven on first use (minutes: Quarkus's build plugins download)."""
    if built(home):
        return runner_jar(home)
    root = registry_dir(home)
    with file_lock(root / ".lock"):
        if not built(home):
            _build(root)
    return runner_jar(home)


def _build(root: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise RegistryError("Maven (`mvn`) is needed once to build Apicurio Registry for the schema registry "
                            "tests; install Maven 3.6+ (e.g. `apt-get install maven`)")
    (root / _MARKER).unlink(missing_ok=True)
    shutil.rmtree(root / "target", ignore_errors=True)
    (root / "pom.xml").write_text(runner_pom())
    # the index is build-time configuration, given on the command line (nothing else of the app is overridden)
    cmd = [mvn, "-B", "-q", "package", "-DskipTests",
           "-Dquarkus.index-dependency.registry-app.group-id=io.apicurio",
           "-Dquarkus.index-dependency.registry-app.artifact-id=apicurio-registry-app"]
    try:
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RegistryError(f"could not run Maven to build Apicurio Registry: {exc}") from exc
    if out.returncode != 0 or not (root / "target" / _JAR).is_file():
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-25:])
        raise RegistryError(f"Maven failed (exit {out.returncode}) building Apicurio Registry "
                            f"{APICURIO_VERSION} in {root}:\n{tail}")
    (root / _MARKER).write_text(f"apicurio-registry {APICURIO_VERSION}\n")


class ApicurioRegistry:
    """One registry process with in-memory storage; ``url`` is its Confluent-compatible API."""

    def __init__(self, home: Path | None = None, port: int | None = None, start_timeout_s: float = 240) -> None:
        self.home = home
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = registry_dir(home) / f"registry-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def start(self) -> ApicurioRegistry:
        jar = ensure_registry(self.home)
        cmd = [check_java(), "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1", "-jar", str(jar)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=jar.parent, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                raise RegistryError(f"Apicurio Registry did not start on port {self.port}:\n{tail}")
            time.sleep(0.5)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main() -> int:
    """``python -m pipeline.testing.registry``: build the registry once, up front (``make test``)."""
    try:
        print(ensure_registry())
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
