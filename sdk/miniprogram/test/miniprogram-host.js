// Enough of WeChat's mini-program host to run the example (example/app.js and its
// pages) in Node: the globals App, Page, getApp and wx; the example's modules loaded
// afresh, with config.js replaced by the test's; page instances with data and setData;
// and the wx calls a page makes for its screen (toast, modal, sound, vibration,
// location), recorded in `ui`.
'use strict';
const path = require('path');
const Module = require('module');

const EXAMPLE = path.join(__dirname, '..', 'example');

/** An instance of an App({...}) or Page({...}) definition: its methods called with the
 * instance as `this`, its own copy of `data`, and setData as WeChat's (top-level keys). */
function instance(definition, extra) {
  const self = { ...definition, ...extra };
  self.data = JSON.parse(JSON.stringify(definition.data || {}));
  self.setData = (patch) => Object.assign(self.data, patch);
  return self;
}

/** Adds the screen's wx calls to `wx`, recording each in `ui`; `location` is what
 * wx.getLocation answers (change it to move the phone). */
function withScreen(wx) {
  const ui = [];
  const screen = {
    ui,
    location: { latitude: 31.2304, longitude: 121.4737 },
  };
  Object.assign(wx, {
    showToast: (o) => ui.push({ call: 'showToast', title: o.title }),
    showModal: (o) => ui.push({ call: 'showModal', title: o.title, content: o.content }),
    vibrateShort: () => ui.push({ call: 'vibrateShort' }),
    getLocation: ({ success }) =>
      setImmediate(() => success({ ...screen.location, accuracy: 10 })),
    createInnerAudioContext: () => ({
      src: '',
      play() { ui.push({ call: 'play', src: this.src }); },
      destroy() {},
    }),
  });
  return screen;
}

/**
 * Loads the example's app.js with `wx` as the global wx and `config` in place of
 * config.js (the committed one when not given). `page(route)` loads a page and answers
 * its instance (call its onLoad yourself); `unload()` removes the globals.
 */
function loadExample({ wx, config }) {
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(EXAMPLE + path.sep)) delete require.cache[key];
  }
  if (config) {
    const file = path.join(EXAMPLE, 'config.js');
    const fake = new Module(file, module);
    fake.filename = file;
    fake.loaded = true;
    fake.exports = config;
    require.cache[file] = fake;
  }
  let appDefinition;
  let pageDefinition;
  let app;
  Object.assign(global, {
    wx,
    App: (d) => { appDefinition = d; },
    Page: (d) => { pageDefinition = d; },
    getApp: () => app,
  });
  require(path.join(EXAMPLE, 'app.js'));
  if (!appDefinition) throw new Error('app.js did not call App()');
  app = { ...appDefinition, globalData: JSON.parse(JSON.stringify(appDefinition.globalData || {})) };
  return {
    app,
    page(route) {
      pageDefinition = undefined;
      require(path.join(EXAMPLE, `${route}.js`));
      if (!pageDefinition) throw new Error(`${route}.js did not call Page()`);
      return instance(pageDefinition, { route });
    },
    unload() {
      for (const name of ['wx', 'App', 'Page', 'getApp']) delete global[name];
    },
  };
}

/** Polls `check` until it returns something truthy (answered) or `ms` pass (throws,
 * saying `what`: a string, or a function called then). */
async function eventually(what, check, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > until) throw new Error(`not within ${ms} ms: ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

module.exports = { EXAMPLE, loadExample, withScreen, eventually };
