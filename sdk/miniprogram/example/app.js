// The example mini-program: a merchant page (pages/merchant) and a rider page
// (pages/rider). Each page keeps its own socket; the app only provides tokens.
const config = require('./config.js');

// A token is renewed this long before it expires.
const RENEW_BEFORE_MS = 2 * 60 * 1000;

App({
  globalData: {
    // The token of the last wx.login, and when it expires (ms since the epoch).
    login: null,
  },

  /**
   * A Promise of a valid access token for `role` ('merchant' or 'rider'): the pages'
   * `getToken` for the SDK and their Bearer token for wx.request. The SDK calls it
   * before each connect and again before the token expires (to extend the socket
   * in-band), so it answers a fresh token once the old one is close to expiry.
   *
   * With `locallife demo`: the token pasted into config.js. Otherwise a WeChat login
   * (wx.login → POST /v1/auth/wechat-login), kept until two minutes before it expires.
   */
  refreshToken(role) {
    const pasted = config.TOKENS[role];
    if (pasted) return Promise.resolve(pasted);
    const held = this.globalData.login;
    if (held && held.expiresAt - Date.now() > RENEW_BEFORE_MS) return Promise.resolve(held.token);
    return wechatLogin().then((login) => {
      this.globalData.login = login;
      return login.token;
    });
  },
});

function wechatLogin() {
  return new Promise((resolve, reject) => {
    wx.login({
      success: ({ code }) =>
        wx.request({
          url: `${config.API_BASE}/v1/auth/wechat-login`,
          method: 'POST',
          data: { code },
          success: (res) => {
            if (res.statusCode !== 200) {
              reject(new Error(`wechat-login: HTTP ${res.statusCode} ${JSON.stringify(res.data)}`));
              return;
            }
            const { access_token, expires_in } = res.data;
            resolve({ token: access_token, expiresAt: Date.now() + expires_in * 1000 });
          },
          fail: reject,
        }),
      fail: reject,
    });
  });
}
