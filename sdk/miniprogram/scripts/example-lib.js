// Puts the SDK's build into the example mini-program as libs/realtime.js, the file its
// pages require (part of `npm run build`). dist/index.js is self-contained: no require().
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
fs.copyFileSync(path.join(root, 'dist', 'index.js'), path.join(root, 'example', 'libs', 'realtime.js'));
