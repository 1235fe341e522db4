#!/usr/bin/env bash
# Spark 4 runs on Java 17 or 21. Stop setup with one clear line otherwise.
set -euo pipefail
# Spark launches $JAVA_HOME/bin/java when JAVA_HOME is set, else java from PATH: check that one.
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
if ! command -v "$java" >/dev/null 2>&1; then
  echo "prescore setup: Java not found (looked for $java). Install a Java 17 JDK (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) and retry." >&2
  exit 1
fi
version=$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [[ "$major" != "17" && "$major" != "21" ]]; then
  echo "prescore setup: Java ${version:-unknown} found, but Spark 4 needs Java 17 or 21. Install openjdk-17-jdk-headless or point JAVA_HOME at one." >&2
  exit 1
fi
# Setup compiles one small class against Spark's jars (prescore.platform.logstore): a JDK, not a JRE.
javac=${JAVA_HOME:+$JAVA_HOME/bin/}javac
if ! command -v "$javac" >/dev/null 2>&1; then
  echo "prescore setup: javac not found (looked for $javac): Java $version is a JRE. Install the JDK (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) and retry." >&2
  exit 1
fi
