#!/usr/bin/env node
// The installed entry point. The code is TypeScript that Node 22.18+/24 runs directly
// (type stripping); older Nodes are told what to do instead of failing on the syntax.
const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `modelship needs Node.js 22.18 or newer (this is ${process.version}); run it through npm (npm start, npx modelship) to use the project's Node 24.\n`,
  );
  process.exit(1);
}
const { main } = await import("../controller/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
