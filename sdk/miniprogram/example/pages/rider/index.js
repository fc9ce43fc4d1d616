// A rider's page: goes online (POST /v1/rider/online), then connects (the server admits
// only an online rider), sends its position over the socket every LOCATION_EVERY_S,
// lists the orders recommended to it with an accept button, and goes offline on a tap
// (the server then closes the socket with 4003, and the SDK stops).
const { createClient } = require('../../libs/realtime.js');
const config = require('../../config.js');
const { api, describe, reasonCode } = require('../../utils/api.js');

Page({
  data: { status: 'offline', offers: [], note: '' },

  onLoad() {
    this.client = createClient({
      url: config.WS_URL,
      getToken: () => getApp().refreshToken('rider'),
      onNotification: (n) => this.onNotification(n),
      onEvent: (e) => this.onClientEvent(e),
    });
    return this.goOnline();
  },

  onUnload() {
    this.stopLocationUpdates();
    this.client.close();
  },

  goOnline() {
    this.setData({ status: 'going online', note: '' });
    return position()
      .then((pos) => api('rider', 'POST', '/v1/rider/online', pos))
      .then(() => {
        this.client.connect();
        this.startLocationUpdates();
      })
      .catch((e) => this.setData({ status: 'offline', note: `online failed: ${describe(e)}` }));
  },

  goOffline() {
    this.stopLocationUpdates();
    return api('rider', 'POST', '/v1/rider/offline').catch((e) =>
      this.setData({ note: `offline failed: ${describe(e)}` }),
    );
  },

  startLocationUpdates() {
    this.stopLocationUpdates();
    this.locationTimer = setInterval(() => this.sendLocation(), config.LOCATION_EVERY_S * 1000);
  },

  stopLocationUpdates() {
    if (this.locationTimer) clearInterval(this.locationTimer);
    this.locationTimer = undefined;
  },

  // The position over the socket. Resolves false when no socket is open: the next tick
  // sends again, and every connect sends one at once (onClientEvent).
  sendLocation() {
    return position().then(
      (pos) => this.client.send('location', pos),
      () => false,
    );
  },

  accept(e) {
    const orderId = Number(e.currentTarget.dataset.id);
    const drop = () => this.setData({ offers: this.data.offers.filter((o) => o.order_id !== orderId) });
    return api('rider', 'POST', `/v1/rider/orders/${orderId}/accept`).then(
      () => {
        drop();
        wx.showToast({ title: `已接单 #${orderId}` });
      },
      (error) => {
        // 409 order_taken: another rider was quicker.
        if (error.statusCode === 409) drop();
        wx.showToast({ title: describe(error), icon: 'none' });
      },
    );
  },

  // Resolving acks the notification; throwing leaves it to come again.
  onNotification(n) {
    switch (n.event) {
      case 'order.recommend':
        wx.vibrateShort({ type: 'heavy' });
        this.setData({
          offers: [
            {
              order_id: n.order_id,
              merchant_name: n.merchant_name,
              distance_m: n.distance_m,
              yuan: (n.total_fen / 100).toFixed(2),
            },
            ...this.data.offers.filter((o) => o.order_id !== n.order_id),
          ],
        });
        break;
      case 'order.taken':
        this.setData({ offers: this.data.offers.filter((o) => o.order_id !== n.order_id) });
        break;
      case 'order.dispatched':
        wx.showToast({ title: `派单 #${n.order_id} ${n.merchant_name}`, icon: 'none' });
        break;
      case 'rider.command':
        // Not awaited: the ack goes now, not when the rider taps OK.
        wx.showModal({ title: n.title, content: n.content, showCancel: false });
        break;
      default:
        break;
    }
  },

  onClientEvent(e) {
    if (e.type === 'open') {
      this.setData({ status: 'open' });
      this.sendLocation();
    }
    if (e.type === 'reconnecting') this.setData({ status: `reconnecting in ${Math.round(e.delay_ms / 1000)} s` });
    // 4003: offline (rider_offline, also after goOffline) or not approved.
    if (e.type === 'stopped') {
      this.stopLocationUpdates();
      this.setData({ status: `offline: ${reasonCode(e.reason)}` });
    }
    // The server's answer to a message it refused (a location, say): {code, message}.
    if (e.type === 'error' && e.error && e.error.code) this.setData({ note: `${e.error.code}: ${e.error.message}` });
  },
});

/** The rider's position: config.RIDER_POSITION, or the device's. */
function position() {
  if (config.RIDER_POSITION) return Promise.resolve({ ...config.RIDER_POSITION });
  return new Promise((resolve, reject) =>
    wx.getLocation({
      type: 'gcj02',
      success: (r) => resolve({ lat: r.latitude, lng: r.longitude }),
      fail: reject,
    }),
  );
}
