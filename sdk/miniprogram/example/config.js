// Where the example connects, and as whom. Edit this file, then recompile in WeChat
// DevTools. The steps: ../README.md, "Your first notification".

// The API's origin: `locallife demo` prints it ("serving on http://127.0.0.1:8080").
// Plain http:// and ws:// to 127.0.0.1 work in DevTools with 详情 → 本地设置 →
// "不校验合法域名、web-view（业务域名）、TLS 版本以及 HTTPS 证书" ticked (this project sets
// it: urlCheck false). On a phone (预览 / 真机调试) use your computer's LAN address
// instead, e.g. http://192.168.1.20:8080 (start the demo with LISTEN_ADDR=0.0.0.0:8080).
// In production: https://your.domain, with that domain in the mini-program console
// (开发管理 → 开发设置 → 服务器域名) under both request 合法域名 (https://) and socket
// 合法域名 (wss://).
const API_BASE = 'http://127.0.0.1:8080';

module.exports = {
  API_BASE,
  // The socket endpoint: ws:// for http://, wss:// for https://.
  WS_URL: `${API_BASE.replace(/^http/, 'ws')}/v1/ws`,

  // Access tokens pasted from `locallife demo`'s output ("Users (tokens valid 24 h)"):
  // the `merchant` line's token (an admin of the approved demo merchant) and the `rider`
  // line's (an approved rider). Run the demo again for fresh ones after 24 h. Leave a
  // token empty to log in with wx.login instead (app.js), as a real app does: that needs
  // WECHAT_APPID/WECHAT_SECRET on the server, and makes a consumer until the platform
  // approves the user as a merchant admin or a rider (until then: 4003, "not admitted").
  TOKENS: {
    merchant: '',
    rider: '',
  },

  // Where the rider page says the rider is, for going online and the location updates:
  // the demo rider's spot, 180 m north of the demo kitchen, so that the demo's orders
  // are recommended to it. null: the device's position (wx.getLocation).
  RIDER_POSITION: { lat: 31.232, lng: 121.4737 },
  // How often the rider page sends its position over the socket (seconds).
  LOCATION_EVERY_S: 15,
};
