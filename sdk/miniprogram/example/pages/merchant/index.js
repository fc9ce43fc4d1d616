// A merchant's order page: plays a sound on every new paid order (order.paid), shows
// urges and low-stock alerts, and keeps the socket while the page lives.
//
// libs/realtime.js is the SDK's dist/index.js, put there by `npm run build` (or use npm
// and 工具 → 构建 npm in WeChat DevTools, then require('@locallife/realtime')).
const { createClient } = require('../../libs/realtime.js');
const config = require('../../config.js');
const { reasonCode } = require('../../utils/api.js');

Page({
  data: { status: 'idle', orders: [] },

  onLoad() {
    this.sound = wx.createInnerAudioContext();
    this.sound.src = '/assets/new-order.mp3';
    this.client = createClient({
      url: config.WS_URL,
      // Before each connect and before the token expires: a valid token (app.js).
      getToken: () => getApp().refreshToken('merchant'),
      onNotification: (n) => this.onNotification(n),
      onEvent: (e) => this.onClientEvent(e),
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

  // Resolving acks the notification; throwing leaves it to come again.
  onNotification(n) {
    switch (n.event) {
      case 'order.paid':
        this.sound.play();
        wx.vibrateShort({ type: 'heavy' });
        this.setData({
          orders: [
            { message_id: n.message_id, order_id: n.order_id, yuan: (n.total_fen / 100).toFixed(2) },
            ...this.data.orders,
          ],
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
  },

  onClientEvent(e) {
    if (e.type === 'open') this.setData({ status: 'open' });
    if (e.type === 'reconnecting') this.setData({ status: `reconnecting in ${Math.round(e.delay_ms / 1000)} s` });
    // 4003: not a merchant admin (a consumer's token, or the merchant is not approved).
    if (e.type === 'stopped') this.setData({ status: `not admitted: ${reasonCode(e.reason)}` });
  },
});
