#!/bin/bash
# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
##  File:  configure-apt.sh
##  Desc:  Make apt lean and unattended: no recommends, no docs or man pages, no prompts.
set -euo pipefail

cat > /etc/apt/apt.conf.d/90fleetbake <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
// Package descriptions in English only: no Translation-* indexes to fetch.
Acquire::Languages "none";
CONF

# Documentation is never read on a worker, nor are messages translated (LANG=C.UTF-8); copyright files stay.
cat > /etc/dpkg/dpkg.cfg.d/90fleetbake-nodoc <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CONF
