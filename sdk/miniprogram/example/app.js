// The merchant app. The socket itself lives in pages/orders (it is that page's job to
// show new orders); the app only keeps the access token.
App({
  globalData: {
    // From your login flow (POST /v1/auth/wechat-login); refreshed by getToken below.
    accessToken: '',
  },
});
