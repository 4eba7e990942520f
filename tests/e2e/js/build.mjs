// Bundles JsSIP from node_modules into one browser script that sets
// window.JsSIP: the npm tarball of jssip ships only CommonJS lib/, no browser
// build, and the test page must load nothing from a CDN.
//
//   node build.mjs [OUTFILE] [--minify]    (default: build/jssip.bundle.js)
//
// With --minify it makes the copy the built-in web phone embeds
// (controlplane/webphone/static/jssip.min.js, with a license header added).
//
// The e2e harness runs this once per test run into its own temporary
// directory, so a stale bundle can never be tested.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const minify = args.includes('--minify');
const outArg = args.find((a) => a !== '--minify');
const outfile = path.resolve(outArg || path.join(here, 'build', 'jssip.bundle.js'));
await build({
  absWorkingDir: here,
  stdin: { contents: "import JsSIP from 'jssip';\nglobalThis.JsSIP = JsSIP;\n", resolveDir: here, sourcefile: 'jssip-entry.mjs' },
  bundle: true, format: 'iife', platform: 'browser', target: 'es2019', minify, legalComments: 'inline',
  define: { 'process.env.NODE_ENV': '"production"' }, logLevel: 'warning', outfile,
});
console.log(`built ${outfile}`);
