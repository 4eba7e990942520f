// Bundles JsSIP from node_modules into one browser script that sets
// window.JsSIP: the npm tarball of jssip ships only CommonJS lib/, no browser
// build, and the test page must load nothing from a CDN.
//
//   node build.mjs [OUTFILE]    (default: build/jssip.bundle.js)
//
// The e2e harness runs this once per test run into its own temporary
// directory, so a stale bundle can never be tested.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const outfile = path.resolve(process.argv[2] || path.join(here, 'build', 'jssip.bundle.js'));
await build({
  absWorkingDir: here,
  stdin: { contents: "import JsSIP from 'jssip';\nglobalThis.JsSIP = JsSIP;\n", resolveDir: here, sourcefile: 'jssip-entry.mjs' },
  bundle: true, format: 'iife', platform: 'browser', target: 'es2019', minify: false,
  define: { 'process.env.NODE_ENV': '"production"' }, logLevel: 'warning', outfile,
});
console.log(`built ${outfile}`);
