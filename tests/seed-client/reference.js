// The seed document's reference mini-program code (section 5 of the front-end
// WebSocket document), unchanged but for the export at the end. It never acks, shows a
// toast for every notification and reconnects 3 s after every close: protocol 1.

// WebSocket 链接管理
let socketTask = null;

function connectWebSocket(token) {
  socketTask = wx.connectSocket({
    url: `ws://api.example.com/v1/ws?token=${token}`,
    success: () => {
      console.log('WebSocket 连接发起成功');
    }
  });

  socketTask.onOpen(() => {
    console.log('WebSocket 已连接');
  });

  socketTask.onMessage((res) => {
    const msg = JSON.parse(res.data);
    console.log('收到服务器消息:', msg);
    
    // 处理不同类型的消息
    if (msg.type === 'notification') {
      wx.showToast({ title: msg.data.title, icon: 'none' });
      // 可以在此处播放提示音
    }
  });

  socketTask.onClose((res) => {
    console.log('WebSocket 已断开', res);
    // 实施重连机制
    setTimeout(() => connectWebSocket(token), 3000);
  });

  socketTask.onError((err) => {
    console.error('WebSocket 错误', err);
  });
}

module.exports = { connectWebSocket };
