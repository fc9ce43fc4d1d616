// The README against what it describes: its links lead to files, the server default it
// quotes is the server's, and what its snippets call exists in the example.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

test('every relative link of the README leads to a file', () => {
  const links = [...readme.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));
  assert.ok(links.length > 5);
  for (const link of links) assert.ok(fs.existsSync(path.join(root, link)), `README links to ${link}`);
});

test("the README's WS_ACK_TIMEOUT default is the server's (src/config/websocket.rs)", () => {
  const config = fs.readFileSync(path.join(root, '../../src/config/websocket.rs'), 'utf8');
  const server = config.match(/"WS_ACK_TIMEOUT",\s*Duration::from_secs\((\d+)\)/);
  assert.ok(server, 'WS_ACK_TIMEOUT read in src/config/websocket.rs with Duration::from_secs');
  const quoted = readme.match(/`WS_ACK_TIMEOUT`,\s*(\d+) s by default/);
  assert.ok(quoted, 'the README quotes the default');
  assert.strictEqual(quoted[1], server[1]);
});

test("the README's snippets call what the example has", () => {
  const app = fs.readFileSync(path.join(root, 'example/app.js'), 'utf8');
  assert.match(readme, /getApp\(\)\.refreshToken\('merchant'\)/);
  assert.match(app, /refreshToken\(role\)/);
  for (const file of readme.matchAll(/'(\/assets\/[^']+)'/g)) {
    assert.ok(fs.existsSync(path.join(root, 'example', file[1])), `${file[1]} is in example/`);
  }
  const version = require('../package.json').version;
  assert.ok(readme.includes(`locallife-realtime-${version}.tgz`), `the README names the tarball of ${version}`);
});
