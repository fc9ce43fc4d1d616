// A merchant's order page: plays a sound on every new paid order (order.paid), shows
// urges and low-stock alerts, and keeps the socket while the page lives.
//
// libs/realtime.js is the SDK's dist/index.js, copied (or use npm and "构建 npm" in
// WeChat DevTools, then require('@locallife/realtime')).
const { createClient } = require('../../libs/realtime.js');

const API = 'https://api.example.com';

Page({
  data: { status: 'idle', orders: [] },

  onLoad() {
    this.sound = wx.createInnerAudioContext();
    this.sound.src = '/assets/new-order.mp3';
    this.client = createClient({
      url: 'wss://api.example.com/v1/ws',
      // Called before each connect and before the token expires: return a valid token.
      getToken: () => refreshToken(),
      onNotification: async (n) => {
        switch (n.event) {
          case 'order.paid':
            this.sound.play();
            this.setData({
              orders: [{ message_id: n.message_id, order_id: n.order_id, yuan: (n.total_fen / 100).toFixed(2) }, ...this.data.orders],
            });
            break;
          case 'order.urged':
            wx.showToast({ title: `订单 #${n.order_id} 催单`, icon: 'none' });
            break;
          case 'inventory.low':
            wx.showToast({ title: `${n.product_name} 库存 ${n.stock}`, icon: 'none' });
            break;
          default:
            break;
        }
        // Resolving acks it; throwing leaves it to come again.
      },
      onEvent: (e) => {
        if (e.type === 'open') this.setData({ status: 'open' });
        if (e.type === 'reconnecting') this.setData({ status: `reconnecting in ${Math.round(e.delay_ms / 1000)} s` });
        if (e.type === 'stopped') this.setData({ status: 'not admitted: ask the platform' });
      },
    });
    this.client.connect();
  },

  onShow() {
    // After a stop (4003) the merchant may have been approved meanwhile.
    if (this.client && this.client.state() === 'stopped') this.client.connect();
  },

  onUnload() {
    this.client.close();
    this.sound.destroy();
  },
});

// Your token refresh: here, the token kept by the app after login, renewed through
// your backend's login endpoint when it is close to expiry.
function refreshToken() {
  return new Promise((resolve, reject) => {
    wx.login({
      success: ({ code }) =>
        wx.request({
          url: `${API}/v1/auth/wechat-login`,
          method: 'POST',
          data: { code },
          success: (res) => (res.statusCode === 200 ? resolve(res.data.access_token) : reject(res)),
          fail: reject,
        }),
      fail: reject,
    });
  });
}
