#!/usr/bin/env node
// vmctl as installed (copied to dist/vmctl/vmctl.cjs): runs a bundle through the V8 code cache the build made, so it is
// not parsed again on every run: vmctl-list.cjs for a listing, vmctl-main.cjs (the whole program) for anything else.
// With no cache, or one from another Node, V8 parses as usual.
'use strict';

const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

/** A bundle compiled as Node's own CommonJS wrapper would (the same text the cache was made from), and run. */
function bundleLoad(dir, name) {
  const file = join(dir, name);
  // The build checks the bundles are ASCII, which latin1 reads as one byte per character (cheaper than utf8's
  // decoding); vmctl.ts's `#!` line, legal only at a file's very start, becomes a comment.
  const source = readFileSync(file, 'latin1').replace(/^#!/, '//');
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.cache`);
  } catch {
    cachedData = undefined;
  }
  const script = new Script(`(function (exports, require, module, __filename, __dirname, importModule) {${source}\n})`, {
    filename: file,
    cachedData,
  });
  const bundle = { exports: {} };
  // A script of node:vm cannot import() in Node 20 (not without --experimental-vm-modules): the build turned the
  // bundle's `import("execa")` into importModule("execa"), which this real module does for it.
  const importModule = (specifier) => import(specifier);
  script.runInThisContext()(bundle.exports, require, bundle, file, dir, importModule);
  return { script, exports: bundle.exports };
}

/** The words that can select `status` or `show` (shorter prefixes are ambiguous): only then is the listing tried. */
const LISTING_WORD = /^(stat|statu|status|sh|sho|show)$/;

if (require.main === module) {
  const listing = process.argv.slice(2).some((a) => LISTING_WORD.test(a));
  // The listing bundle declines anything it does not run exactly as the whole program would.
  if (!listing || !bundleLoad(__dirname, 'vmctl-list.cjs').exports.runListing()) bundleLoad(__dirname, 'vmctl-main.cjs').exports.runProgram();
} else {
  module.exports = { bundleLoad };
}
