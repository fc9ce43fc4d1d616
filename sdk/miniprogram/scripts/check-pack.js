// Checks the package a front-end team installs: `npm pack` (prepack builds dist/) must
// hold exactly the built SDK, its types, the README and package.json: no sources,
// tests or example. Fails (exit 1) when a file is missing or one too many.
//
//   node scripts/check-pack.js              npm pack --dry-run: what would be packed
//   node scripts/check-pack.js --into DIR   packs for real into DIR and reads the tarball
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { execFileSync } = require('child_process');

const EXPECTED = ['README.md', 'dist/index.d.ts', 'dist/index.js', 'dist/types.d.ts', 'package.json'];
const root = path.join(__dirname, '..');
const into = process.argv[2] === '--into' ? path.resolve(process.argv[3]) : undefined;

/** The paths in a .tgz (ustar: a 512-byte header per entry, name and prefix fields),
 * without the `package/` every npm tarball puts first, and each file's content. */
function readTarball(file) {
  const tar = zlib.gunzipSync(fs.readFileSync(file));
  const entries = new Map();
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from, len) => header.subarray(from, from + len).toString('utf8').replace(/\0.*$/s, '');
    const name = [field(345, 155), field(0, 100)].filter(Boolean).join('/');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (header[156] === 0x30 || header[156] === 0) {
      entries.set(name.replace(/^package\//, ''), tar.subarray(at + 512, at + 512 + size));
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const args = into ? ['pack', '--json', '--pack-destination', into] : ['pack', '--dry-run', '--json'];
if (into) {
  // A tarball of an older version would linger beside the new one.
  fs.mkdirSync(into, { recursive: true });
  for (const f of fs.readdirSync(into)) if (f.endsWith('.tgz')) fs.rmSync(path.join(into, f));
}
let output;
try {
  // Lifecycle output (prepack's build) goes to stderr under --json: shown if it fails.
  output = execFileSync(npm, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
} catch (e) {
  process.stderr.write(Buffer.concat([e.stdout || Buffer.alloc(0), e.stderr || Buffer.alloc(0)]));
  console.error(`npm ${args.join(' ')} failed`);
  process.exit(1);
}
const [packed] = JSON.parse(output.toString());
let listed = packed.files.map((f) => f.path);
const problems = [];
if (into) {
  const tarball = path.join(into, packed.filename);
  const entries = readTarball(tarball);
  const inTarball = [...entries.keys()];
  if (inTarball.sort().join() !== listed.slice().sort().join()) {
    problems.push(`npm listed ${listed.join(', ')} but the tarball holds ${inTarball.join(', ')}`);
  }
  listed = inTarball;
  // The build, not a stale or empty file: the client factory is in it, with no require()
  // (a mini-program copies it alone).
  const js = (entries.get('dist/index.js') || '').toString();
  if (!js.includes('exports.createClient') || /\brequire\(/.test(js)) problems.push('dist/index.js is not the self-contained build');
  if (!(entries.get('dist/index.d.ts') || '').toString().includes('createClient')) problems.push('dist/index.d.ts does not declare createClient');
  console.log(`packed ${tarball}`);
}
const missing = EXPECTED.filter((f) => !listed.includes(f));
const extra = listed.filter((f) => !EXPECTED.includes(f));
if (missing.length) problems.push(`missing: ${missing.join(', ')}`);
if (extra.length) problems.push(`not for the package: ${extra.join(', ')} (package.json "files")`);
if (problems.length) {
  console.error(`${packed.filename}: ${problems.join('; ')}`);
  process.exitCode = 1;
} else {
  console.log(`${packed.filename}: ${listed.length} files, as expected (${EXPECTED.join(', ')})`);
}
