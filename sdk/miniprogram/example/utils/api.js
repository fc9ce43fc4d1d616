// The HTTP API, as the pages call it: wx.request with the role's token.
const config = require('../config.js');

/** A Promise of the answer's JSON body; rejects with {statusCode, data} unless 2xx. */
function api(role, method, path, data) {
  return getApp()
    .refreshToken(role)
    .then(
      (token) =>
        new Promise((resolve, reject) => {
          wx.request({
            url: `${config.API_BASE}${path}`,
            method,
            data,
            header: { Authorization: `Bearer ${token}` },
            success: (res) =>
              res.statusCode >= 200 && res.statusCode < 300
                ? resolve(res.data)
                : reject({ statusCode: res.statusCode, data: res.data }),
            fail: reject,
          });
        }),
    );
}

/** A failed call in words: the server's `code` when it sent one. */
function describe(error) {
  if (error && error.data && error.data.code) return `${error.statusCode} ${error.data.code}`;
  if (error && error.errMsg) return error.errMsg;
  return String((error && error.message) || error);
}

/** The server's reason for a 4003 (JSON, e.g. {"code":"rider_offline",…}) in words. */
function reasonCode(reason) {
  try {
    return JSON.parse(reason).code || reason;
  } catch (_) {
    return reason || '';
  }
}

module.exports = { api, describe, reasonCode };
