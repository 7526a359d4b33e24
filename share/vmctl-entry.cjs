#!/usr/bin/env node
// vmctl as installed (copied to dist/vmctl/vmctl.cjs): runs the bundle vmctl-main.cjs through the V8 code cache the build
// made, so its 160 KB are not parsed again on every run; with no cache, or one from another Node, V8 parses as usual.
'use strict';

const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

/** The bundle compiled as Node's own CommonJS wrapper would (the same text the cache was made from), and run. */
function bundleLoad(dir) {
  const file = join(dir, 'vmctl-main.cjs');
  // vmctl.ts's `#!` line, legal only at a file's very start, becomes a comment.
  const source = readFileSync(file, 'utf8').replace(/^#!/, '//');
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

if (require.main === module) bundleLoad(__dirname).exports.runProgram();
else module.exports = { bundleLoad };
