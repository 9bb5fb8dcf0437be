// One PIM DRAM bank (GDDR6-AiM style) with its MAC unit: the single-bank reduction of
// sim/machines/pim/dram.py's CommandChannel (bank 0 of a one-bank-group channel).
//
// Storage: ROWS x COLS column bursts of LANES int16 lanes (the array), a row buffer that
// ACT fills from the array and PRE writes back, and a global buffer of GB_COLS bursts.
// ROWS is a reduced count (the arch has 16 K rows per bank; the timing does not depend on it).
//
// Commands (cmd_kind), one per cycle at most, each issued at the earliest legal cycle:
//   ACT   row      bank idle; >= PRE + tRP, ACT + tRC       row buffer <= array[row]
//   PRE            open: >= ACT + tRAS, RD/MAC + tRTP, WR + tCWL + tBL + tWR (write recovery
//                  from the write's last data), RDMAC + tRDMAC_PRE (0: none);
//                  array[row] <= row buffer; idle: a no-op slot
//   RD    col      open; >= ACT + tRCD_RD                    rd_data <= row buffer[col]
//   WR    col      open; >= ACT + tRCD_WR                    row buffer[col] <= cmd_data
//   MAC   col gb   open; >= ACT + tRCD_MAC, WRGB + WR_GB     acc += dot(row buffer[col], gbuf[gb])
//   RDMAC                                                    mac_result <= acc; acc <= 0
//   WRGB  gb                                                 gbuf[gb] <= cmd_data
//   MODE                                                     the mode register flips
//   column spacing: RD WR MAC RDMAC >= last column + tCCD_S and last RD/WR/MAC/RDMAC + tCCD_L;
//   WRGB only >= last column + tCCD_S (it holds no bank group).
//   mode: every command >= MODE + tMODCH; WRGB and RDMAC (the register commands) issue only in
//   register mode, the others only in bank mode (the mode register starts in bank mode); a
//   command of the other mode is illegal: the controller sends a MODE first. t_modch = 0: no
//   modes (every command in either).
// Every rule "e >= t0 + T" is a down-counter loaded with T-1 at the issuing edge t0 and
// decremented each cycle: it reads 0 from edge t0 + T on. The inter-bank rules (tRRD, tFAW)
// are the channel's; for one bank they are implied by tRC when tRRD_L <= tRC and tFAW <= 4 tRC.
// The counters are TW + 2 bits wide: WR -> PRE sums three timing values.
//
// MAC arithmetic: int16 x int16 products summed over the LANES lanes into an int32
// accumulator, all modulo 2^32 (the arch's BF16 lanes, replaced by integers so the values
// compare bit-exactly with numpy).
//
// Handshake: the command is held on cmd_* with cmd_valid; it issues at the rising edge where
// cmd_ready is high. That edge latches issue_cycle <= cycle (cycle counts edges since reset
// fell, the first is 0) and flips issue_toggle. cmd_illegal flags a command that can never
// issue (ACT to an open bank, RD/WR/MAC to an idle one, a command of the other mode). The ld_* port writes the array
// directly (initial contents; use it while no row is open).
module pim_bank #(
    parameter ROWS = 8,
    parameter COLS = 64,
    parameter LANES = 16,
    parameter GB_COLS = 64,
    parameter TW = 8,                      // width of the timing values (DRAM cycles)
    parameter RW = (ROWS > 1) ? $clog2(ROWS) : 1,
    parameter CW = (COLS > 1) ? $clog2(COLS) : 1,
    parameter GW = (GB_COLS > 1) ? $clog2(GB_COLS) : 1,
    parameter BW = 16 * LANES              // bits of one column burst
) (
    input  wire          clk,
    input  wire          rst,
    // timing (mode registers), every value >= 1, held while commands run
    input  wire [TW-1:0] t_rcd_rd,
    input  wire [TW-1:0] t_rcd_wr,
    input  wire [TW-1:0] t_rcd_mac,
    input  wire [TW-1:0] t_rp,
    input  wire [TW-1:0] t_ras,
    input  wire [TW-1:0] t_rc,
    input  wire [TW-1:0] t_ccd_s,
    input  wire [TW-1:0] t_ccd_l,
    input  wire [TW-1:0] t_rtp,
    input  wire [TW-1:0] t_cwl,
    input  wire [TW-1:0] t_bl,
    input  wire [TW-1:0] t_wr,
    input  wire [TW-1:0] t_wr_gb,
    input  wire [TW-1:0] t_modch,         // 0: no modes
    input  wire [TW-1:0] t_rdmac_pre,     // 0: no wait
    // command port
    input  wire          cmd_valid,
    input  wire [2:0]    cmd_kind,
    input  wire [RW-1:0] cmd_row,
    input  wire [CW-1:0] cmd_col,
    input  wire [GW-1:0] cmd_gb,
    input  wire [BW-1:0] cmd_data,
    output wire          cmd_ready,
    output wire          cmd_illegal,
    // results
    output reg           issue_toggle,
    output reg  [31:0]   issue_cycle,
    output reg  [31:0]   cycle,
    output reg  [BW-1:0] rd_data,
    output reg  [31:0]   mac_result,
    // array load port
    input  wire          ld_valid,
    input  wire [RW-1:0] ld_row,
    input  wire [CW-1:0] ld_col,
    input  wire [BW-1:0] ld_data
);
    localparam [2:0] ACT = 3'd0, PRE = 3'd1, RD = 3'd2, WR = 3'd3, MAC = 3'd4, RDMAC = 3'd5,
                     WRGB = 3'd6, MODE = 3'd7;
    localparam CTW = TW + 2;               // wait counters

    reg [BW-1:0] array [0:ROWS*COLS-1];
    reg [BW-1:0] row_buf [0:COLS-1];
    reg [BW-1:0] gbuf [0:GB_COLS-1];
    reg          open;
    reg [RW-1:0] open_row;
    reg [31:0]   acc;
    reg          reg_mode;                 // the mode register: 1 = register mode

    // wait counters, named by the rule they enforce
    reg [CTW-1:0] w_rp, w_rc, w_ras, w_rcd_rd, w_rcd_wr, w_rcd_mac, w_rtp, w_wr, w_ccd_s, w_ccd_l;
    reg [CTW-1:0] w_wr_gb, w_mod, w_rdmac_pre;
    wire [CTW-1:0] wr_to_pre = t_cwl + t_bl + t_wr;

    wire is_act = cmd_kind == ACT, is_pre = cmd_kind == PRE, is_rd = cmd_kind == RD;
    wire is_wr = cmd_kind == WR, is_mac = cmd_kind == MAC, is_rdmac = cmd_kind == RDMAC;
    wire is_wrgb = cmd_kind == WRGB, is_mode = cmd_kind == MODE;
    wire row_access = is_rd | is_wr | is_mac;
    wire bank_column = row_access | is_rdmac;
    wire wrong_mode = t_modch != 0 && !is_mode && (is_wrgb | is_rdmac) != reg_mode;

    wire ccd_ok = w_ccd_s == 0 && (w_ccd_l == 0 || is_wrgb);
    wire legal = w_mod == 0 && !wrong_mode && (
        is_act   ? !open && w_rp == 0 && w_rc == 0 :
        is_pre   ? !open || (w_ras == 0 && w_rtp == 0 && w_wr == 0 && w_rdmac_pre == 0) :
        is_rd    ? open && ccd_ok && w_rcd_rd == 0 :
        is_wr    ? open && ccd_ok && w_rcd_wr == 0 :
        is_mac   ? open && ccd_ok && w_rcd_mac == 0 && w_wr_gb == 0 :
        is_rdmac ? ccd_ok :
        is_wrgb  ? ccd_ok : 1'b1);                  // MODE
    assign cmd_ready = !rst && cmd_valid && legal;
    assign cmd_illegal = cmd_valid && ((is_act && open) || (row_access && !open) || wrong_mode);
    wire fire = cmd_ready;

    // next value of a wait counter: reload with T-1 when its event issues, else count down
    function [CTW-1:0] next_wait(input [CTW-1:0] w, input load, input [CTW-1:0] t);
        next_wait = load ? t - 1'b1 : (w != 0 ? w - 1'b1 : {CTW{1'b0}});
    endfunction

    // sum over lanes of int16 x int16, modulo 2^32
    function [31:0] dot(input [BW-1:0] a, input [BW-1:0] b);
        integer i;
        reg signed [31:0] product;          // signed operands sign-extend to 32 bits
        begin
            dot = 32'd0;
            for (i = 0; i < LANES; i = i + 1) begin
                product = $signed(a[16*i +: 16]) * $signed(b[16*i +: 16]);
                dot = dot + product;
            end
        end
    endfunction

    integer c;
    always @(posedge clk) begin
        if (ld_valid)
            array[ld_row * COLS + ld_col] <= ld_data;
        if (rst) begin
            open <= 1'b0;
            open_row <= {RW{1'b0}};
            acc <= 32'd0;
            cycle <= 32'd0;
            issue_toggle <= 1'b0;
            issue_cycle <= 32'd0;
            rd_data <= {BW{1'b0}};
            mac_result <= 32'd0;
            reg_mode <= 1'b0;
            {w_rp, w_rc, w_ras, w_rcd_rd, w_rcd_wr, w_rcd_mac} <= {6*CTW{1'b0}};
            {w_rtp, w_wr, w_ccd_s, w_ccd_l, w_wr_gb, w_mod, w_rdmac_pre} <= {7*CTW{1'b0}};
        end else begin
            cycle <= cycle + 1;
            w_rp      <= next_wait(w_rp,      fire && is_pre && open, t_rp);
            w_rc      <= next_wait(w_rc,      fire && is_act, t_rc);
            w_ras     <= next_wait(w_ras,     fire && is_act, t_ras);
            w_rcd_rd  <= next_wait(w_rcd_rd,  fire && is_act, t_rcd_rd);
            w_rcd_wr  <= next_wait(w_rcd_wr,  fire && is_act, t_rcd_wr);
            w_rcd_mac <= next_wait(w_rcd_mac, fire && is_act, t_rcd_mac);
            w_rtp     <= next_wait(w_rtp,     fire && (is_rd || is_mac), t_rtp);
            w_wr      <= next_wait(w_wr,      fire && is_wr, wr_to_pre);
            w_ccd_s   <= next_wait(w_ccd_s,   fire && (bank_column || is_wrgb), t_ccd_s);
            w_ccd_l   <= next_wait(w_ccd_l,   fire && bank_column, t_ccd_l);
            w_wr_gb   <= next_wait(w_wr_gb,   fire && is_wrgb, t_wr_gb);
            w_mod     <= next_wait(w_mod,     fire && is_mode && t_modch != 0, t_modch);
            w_rdmac_pre <= next_wait(w_rdmac_pre, fire && is_rdmac && t_rdmac_pre != 0, t_rdmac_pre);
            if (fire) begin
                issue_cycle <= cycle;
                issue_toggle <= ~issue_toggle;
                case (cmd_kind)
                    ACT: begin
                        open <= 1'b1;
                        open_row <= cmd_row;
                        for (c = 0; c < COLS; c = c + 1)
                            row_buf[c] <= array[cmd_row * COLS + c];
                    end
                    PRE: if (open) begin
                        open <= 1'b0;
                        for (c = 0; c < COLS; c = c + 1)
                            array[open_row * COLS + c] <= row_buf[c];
                    end
                    RD:    rd_data <= row_buf[cmd_col];
                    WR:    row_buf[cmd_col] <= cmd_data;
                    MAC:   acc <= acc + dot(row_buf[cmd_col], gbuf[cmd_gb]);
                    RDMAC: begin
                        mac_result <= acc;
                        acc <= 32'd0;
                    end
                    WRGB:  gbuf[cmd_gb] <= cmd_data;
                    MODE:  reg_mode <= ~reg_mode;
                    default: ;
                endcase
            end
        end
    end
endmodule
