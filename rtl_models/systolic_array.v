// N x N systolic array, int8 x int8 -> int32 or, in int4 mode, two int4 x int4 products per PE
// and cycle, weight- or output-stationary (chosen per GEMM), with skewed feeders, double-buffered
// weights, start/done and a cycle counter.
//
// int4 mode (cfg_int4): every 8-bit lane packs two signed int4 values of consecutive K indices,
// the even one in bits 3:0, the odd one in bits 7:4, and each PE adds both products of a lane
// pair (a_lo b_lo + a_hi b_hi) into its int32 sum. The array then sees K/2 packed values: cfg_k
// is the number of pairs (ceil(K / 2); an odd K pads its last pair with a zero), so a GEMM
// takes gemm_cycles(m, n, k, N, N, dataflow, overlap, pack=2).
//
// One `start` runs a whole tile C[m,n] (+)= A[m,k] B[k,n]: the array walks its own folds, pinned
// cols-mapped fold outer and rows-mapped fold inner (ws: rows map K, cols map N, M streams;
// os: rows map M, cols map N, K streams), and zero-pads partial folds. From the `start` edge to
// the `done` edge it is busy for exactly sim/timing.py gemm_cycles(m, n, k, N, N, dataflow,
// overlap):
//   fold issue   every `period` cycles: P + 2N + T - 2 back to back, max(T, N) overlapped
//                (P = N for ws, 0 for os; T = streamed dimension)
//   ws loader    N cycles: the top feeder pushes weight rows N-1 .. 0 down each column (one row
//                per cycle), column j skewed by j; on the last shift every PE of the column copies
//                its chain input into the weight bank of the fold's parity (the other bank keeps
//                serving the fold still streaming)
//   streamer     T cycles, starting when the loader is done (ws) or at the issue (os); row i
//                skewed by i, so the fold's last operand meets PE(N-1,N-1) 2N - 2 cycles after
//                it entered PE(0,0)
//   done         on the edge where that last operand's tag leaves PE(N-1,N-1), whose result is
//                written to the accumulator on the same edge
// so the total is P + (folds - 1) * period + T + 2N - 2.
// Limits: N >= 2; 1 <= m, n, k <= N * FOLDS_MAX (cfg_* are sampled on the start edge).
//
// Operands live in two on-array memories of N-byte words, filled through one write port:
//   left (mem_sel = 0), word t * FOLDS_MAX + f: the N values entering rows 0..N-1 at stream step
//       t of row fold f: ws A[t, f*N + i] (a row of A); os A[f*N + i, t] (a column of A)
//   top  (mem_sel = 1), word k * FOLDS_MAX + f: B[k, f*N + j] for columns j = 0..N-1
// Lanes outside the shape are masked to zero, so stale words never leak into a result.
// Results: N accumulator banks (bank j holds the columns n = j mod N), read N at a time:
//   acc_rdata[32j +: 32] = C[m, f*N + j] at acc_addr = m * FOLDS_MAX + f.
// ws accumulates its K folds there (the first K fold overwrites); os writes each output once.
`default_nettype none

// One processing element. ws: weight banks w0/w1 (selected by the parity tag travelling with
// a), partial sum in from above, registered partial sum out below. os: B streams down the same
// chain that loads weights in ws, and acc_q is the stationary accumulator (cleared by the
// `first` tag). `sum` is this cycle's result, before the register. Few, wide registers and
// continuous logic: Icarus pays per procedural read and per net event, not per bit.
module systolic_pe #(parameter TAG_W = 5) (
    input  wire                    clk,
    input  wire                    rst,
    input  wire                    os,
    input  wire                    int4,       // two int4 products per lane pair
    input  wire signed [7:0]       a_in,
    input  wire        [TAG_W-1:0] tag_in,     // [0] weight bank parity, [1] first
    input  wire signed [7:0]       b_in,
    input  wire                    commit,
    input  wire                    commit_bank,
    input  wire signed [31:0]      psum_in,
    output wire signed [7:0]       a_out,
    output wire        [TAG_W-1:0] tag_out,
    output wire signed [7:0]       b_out,
    output wire signed [31:0]      acc_q,
    output wire signed [31:0]      sum
);
    reg         [TAG_W-1:0] tag_q;                 // reset: it carries the valid flags
    reg         [47:0]      data_q;                // {a, b, acc}: datapath, no reset
    reg  signed [7:0]       w1, w0;
    wire signed [7:0]  w    = tag_in[0] ? w1 : w0;
    wire signed [7:0]  b    = os ? b_in : w;
    wire signed [15:0] prod8 = a_in * b;
    wire signed [7:0]  lo   = $signed(a_in[3:0]) * $signed(b[3:0]);   // |-8 x -8| = 64 fits
    wire signed [7:0]  hi   = $signed(a_in[7:4]) * $signed(b[7:4]);
    wire signed [15:0] prod = int4 ? lo + hi : prod8;
    wire signed [31:0] base = os ? (tag_in[1] ? 32'sd0 : acc_q) : psum_in;
    assign sum = base + prod;
    wire [TAG_W-1:0] tag_d = rst ? {TAG_W{1'b0}} : tag_in;
    always @(posedge clk) begin
        tag_q  <= tag_d;
        data_q <= {a_in, b_in, sum};
        if (commit && commit_bank)  w1 <= b_in;
        if (commit && !commit_bank) w0 <= b_in;
    end
    assign tag_out = tag_q;
    assign {a_out, b_out, acc_q} = data_q;
endmodule

// D-stage delay line (D = 0: a wire): one lane of the diagonal skew.
module systolic_delay #(parameter W = 1, parameter D = 0) (
    input  wire         clk,
    input  wire         rst,
    input  wire [W-1:0] d,
    output wire [W-1:0] q
);
    generate
        if (D == 0) begin : pass
            assign q = d;
        end else if (D == 1) begin : one
            reg [W-1:0] sr;
            wire [W-1:0] nxt = rst ? {W{1'b0}} : d;
            always @(posedge clk) sr <= nxt;
            assign q = sr;
        end else begin : line
            reg  [W*D-1:0] sr;                   // stage s at [W*s +: W], oldest on top
            wire [W*D-1:0] nxt = rst ? {W*D{1'b0}} : {sr[W*(D-1)-1:0], d};
            always @(posedge clk) sr <= nxt;
            assign q = sr[W*D-1 -: W];
        end
    endgenerate
endmodule

module systolic_array #(
    parameter N         = 4,   // PEs per side
    parameter FOLDS_MAX = 4,   // folds per dimension the memories hold: m, n, k <= N * FOLDS_MAX
    localparam DIM_MAX  = N * FOLDS_MAX,
    localparam DW       = $clog2(DIM_MAX + 1),     // shape fields and indices
    localparam DEPTH    = DIM_MAX * FOLDS_MAX,     // words per memory
    localparam AW       = $clog2(DEPTH)
) (
    input  wire                clk,
    input  wire                rst,
    // operand memories
    input  wire                mem_we,
    input  wire                mem_sel,        // 0: left (A side), 1: top (B side)
    input  wire [AW-1:0]       mem_addr,
    input  wire [8*N-1:0]      mem_wdata,
    // result read port (combinational)
    input  wire [AW-1:0]       acc_addr,
    output wire [32*N-1:0]     acc_rdata,
    // command, sampled on the start edge
    input  wire                start,
    input  wire [DW-1:0]       cfg_m,
    input  wire [DW-1:0]       cfg_n,
    input  wire [DW-1:0]       cfg_k,
    input  wire                cfg_os,         // 0: weight stationary, 1: output stationary
    input  wire                cfg_overlap,    // overlap each fold's preload with the stream
    input  wire                cfg_int4,       // lanes pack two int4 values of consecutive K
    output reg                 busy,
    output reg                 done,           // high from the last result until the next start
    output reg  [31:0]         cycles          // busy cycles of the current / last GEMM
);
    // tag travelling with every operand of the left stream: flags and the fold, all constant
    // within a fold (the ws row index m, which changes every cycle, travels beside the array)
    localparam T_PAR = 0, T_FIRST = 1, T_VALID = 2, T_LAST = 3, T_FINAL = 4, T_RF = 5,
               T_CF = 5 + DW, TAG_W = 5 + 2 * DW;

    // ---- operand memories -------------------------------------------------------------
    reg [8*N-1:0] left_mem [0:DEPTH-1];
    reg [8*N-1:0] top_mem  [0:DEPTH-1];
    always @(posedge clk) begin
        if (mem_we && !mem_sel) left_mem[mem_addr] <= mem_wdata;
        if (mem_we && mem_sel)  top_mem[mem_addr]  <= mem_wdata;
    end

    // ---- command and shape -------------------------------------------------------------
    reg [DW-1:0] m_r, n_r, k_r;
    reg          os_r, ov_r, int4_r;
    wire         go      = start && !busy;
    wire [DW-1:0] t_len  = os_r ? k_r : m_r;        // streamed dimension
    wire [DW-1:0] r_dim  = os_r ? m_r : k_r;        // dimension mapped on the rows
    wire [DW-1:0] r_folds = (r_dim + N - 1) / N;
    wire [DW-1:0] c_folds = (n_r + N - 1) / N;
    wire [15:0]   period  = ov_r ? (t_len > N ? t_len : N)
                                 : (os_r ? 0 : N) + 2 * N + t_len - 2;

    // ---- fold issuer: fold 0 on the start edge, the next one every `period` cycles ------
    reg [DW-1:0] iss_rf, iss_cf;
    reg          iss_par;
    reg [15:0]   iss_cnt;
    wire         iss_more = !(iss_rf == r_folds - 1 && iss_cf == c_folds - 1);
    wire         iss_tick = busy && iss_more && iss_cnt == period - 1;
    wire         wrap     = iss_rf + 1 == r_folds;
    wire [DW-1:0] nxt_rf  = wrap ? {DW{1'b0}} : iss_rf + 1'b1;
    wire [DW-1:0] nxt_cf  = wrap ? iss_cf + 1'b1 : iss_cf;
    wire         issue    = go || iss_tick;
    wire         issue_os = go ? cfg_os : os_r;
    wire [DW-1:0] issue_rf = go ? {DW{1'b0}} : nxt_rf;
    wire [DW-1:0] issue_cf = go ? {DW{1'b0}} : nxt_cf;
    wire         issue_par = go ? 1'b0 : !iss_par;

    always @(posedge clk) begin
        if (rst) begin
            iss_rf <= 0; iss_cf <= 0; iss_par <= 1'b0; iss_cnt <= 16'd0;
        end else if (issue) begin
            iss_rf <= issue_rf; iss_cf <= issue_cf; iss_par <= issue_par; iss_cnt <= 16'd0;
        end else if (busy && iss_more) begin
            iss_cnt <= iss_cnt + 16'd1;
        end
    end

    // ---- ws weight loader: N cycles per fold ---------------------------------------------
    // Fold g commits into bank g%2 of column j at the start of cycle s_g + j (s_g: its first
    // operand at PE(0,0)); fold g-2 last used that bank there in cycle s_{g-2} + T + N + j - 2,
    // earlier because s_g - s_{g-2} = 2 * period >= T + N. So two banks suffice even when the
    // next fold's weights shift in under the current stream.
    reg          ld_on, ld_par;
    reg [DW-1:0] ld_u, ld_rf, ld_cf;
    wire         ld_last = ld_on && ld_u == N - 1;
    wire [DW-1:0] ld_row = ld_rf * N + N - 1 - ld_u;   // B row shifted in this cycle
    always @(posedge clk) begin
        if (rst) begin
            ld_on <= 1'b0; ld_u <= 0; ld_rf <= 0; ld_cf <= 0; ld_par <= 1'b0;
        end else if (issue && !issue_os) begin
            ld_on <= 1'b1; ld_u <= 0; ld_rf <= issue_rf; ld_cf <= issue_cf; ld_par <= issue_par;
        end else if (ld_last) begin
            ld_on <= 1'b0;
        end else if (ld_on) begin
            ld_u <= ld_u + 1'b1;
        end
    end

    // ---- streamer: T cycles per fold, after the weights (ws) or at the issue (os) --------
    reg          st_on, st_par;
    reg [DW-1:0] st_u, st_rf, st_cf;
    wire         st_end = st_on && st_u == t_len - 1;
    always @(posedge clk) begin
        if (rst) begin
            st_on <= 1'b0; st_u <= 0; st_rf <= 0; st_cf <= 0; st_par <= 1'b0;
        end else if (issue && issue_os) begin
            st_on <= 1'b1; st_u <= 0; st_rf <= issue_rf; st_cf <= issue_cf; st_par <= issue_par;
        end else if (ld_last) begin
            st_on <= 1'b1; st_u <= 0; st_rf <= ld_rf; st_cf <= ld_cf; st_par <= ld_par;
        end else if (st_end) begin
            st_on <= 1'b0;
        end else if (st_on) begin
            st_u <= st_u + 1'b1;
        end
    end

    // ---- feeders: memory words to lanes, masked to the shape ------------------------------
    wire [AW-1:0]  l_addr = st_u * FOLDS_MAX + st_rf;
    wire [AW-1:0]  t_addr = os_r ? st_u * FOLDS_MAX + st_cf : ld_row * FOLDS_MAX + ld_cf;
    wire [8*N-1:0] l_word = left_mem[l_addr];
    wire [8*N-1:0] t_word = top_mem[t_addr];
    wire st_first = os_r ? st_u == 0 : st_rf == 0;
    wire st_final = st_end && st_rf == r_folds - 1 && st_cf == c_folds - 1;

    // One net per link (unpacked arrays: a wide flattened bus would wake every reader on any
    // change). Horizontal (a, tag) entering PE(i,j): index i*(N+1)+j, column N the right edge;
    // vertical (b, psum) entering PE(i,j): index i*N+j, row N the bottom edge.
    wire signed [7:0]  a_h   [0:N*(N+1)-1];
    wire [TAG_W-1:0]   tag_h [0:N*(N+1)-1];
    wire signed [7:0]  b_v   [0:N*(N+1)-1];
    wire signed [31:0] p_v   [0:N*(N+1)-1];
    wire signed [31:0] sum_pe [0:N*N-1];
    wire               col_commit [0:N-1];
    wire               col_bank   [0:N-1];
    wire [TAG_W-1:0]   corner = tag_h[(N-1)*(N+1)+N-1];   // entering PE(N-1,N-1)
    wire               fin    = corner[T_FINAL];

    // ws: the row index m of the partial sum leaving the bottom of column j is the streamer's
    // step N-1+j cycles ago (stage s of this line holds st_u delayed s+1 cycles)
    reg  [DW*(2*N-2)-1:0] m_line;
    wire [DW*(2*N-2)-1:0] m_line_d = {m_line[DW*(2*N-3)-1:0], st_u};
    always @(posedge clk) m_line <= m_line_d;

    genvar i, j;
    generate
        for (i = 0; i < N; i = i + 1) begin : left_feed
            wire             ok  = st_on && st_rf * N + i < r_dim;
            wire [TAG_W-1:0] tag = st_on ? {st_cf, st_rf, st_final, st_end, 1'b1, st_first, st_par}
                                         : {TAG_W{1'b0}};
            wire [8+TAG_W-1:0] q;
            systolic_delay #(.W(8 + TAG_W), .D(i)) skew (
                .clk(clk), .rst(rst), .d({ok ? l_word[8*i +: 8] : 8'd0, tag}), .q(q));
            assign a_h[i*(N+1)]   = q[TAG_W +: 8];
            assign tag_h[i*(N+1)] = q[TAG_W-1:0];
        end
        for (j = 0; j < N; j = j + 1) begin : top_feed
            wire ok = os_r ? st_on && st_cf * N + j < n_r
                           : ld_on && ld_row < k_r && ld_cf * N + j < n_r;
            wire [9:0] q;
            systolic_delay #(.W(10), .D(j)) skew (
                .clk(clk), .rst(rst),
                .d({ok ? t_word[8*j +: 8] : 8'd0, !os_r && ld_last, ld_par}), .q(q));
            assign b_v[j]        = q[9:2];
            assign col_commit[j] = q[1];
            assign col_bank[j]   = q[0];
            assign p_v[j]        = 32'sd0;
        end

        for (i = 0; i < N; i = i + 1) begin : row
            for (j = 0; j < N; j = j + 1) begin : col
                systolic_pe #(.TAG_W(TAG_W)) pe (
                    .clk(clk), .rst(rst), .os(os_r), .int4(int4_r),
                    .a_in(a_h[i*(N+1)+j]), .tag_in(tag_h[i*(N+1)+j]),
                    .b_in(b_v[i*N+j]), .psum_in(p_v[i*N+j]),
                    .commit(col_commit[j]), .commit_bank(col_bank[j]),
                    .a_out(a_h[i*(N+1)+j+1]), .tag_out(tag_h[i*(N+1)+j+1]),
                    .b_out(b_v[(i+1)*N+j]), .acc_q(p_v[(i+1)*N+j]),
                    .sum(sum_pe[i*N+j]));
            end
        end

        // ---- accumulator bank j: ws from the bottom PE, os from whichever PE of the column
        // holds its last operand (at most one per cycle: folds start >= N cycles apart) ----
        for (j = 0; j < N; j = j + 1) begin : acc_bank
            for (i = 0; i < N; i = i + 1) begin : pick   // OR chain down the column
                wire [TAG_W-1:0] pt = tag_h[i*(N+1)+j];
                wire             h  = pt[T_VALID] && pt[T_LAST];
                wire             hit;
                wire [31:0]      hit_sum;
                wire [DW-1:0]    hit_m;
                wire [DW-1:0]    hit_cf;
                if (i == 0) begin : first
                    assign hit = h;
                    assign hit_sum = h ? sum_pe[j] : 32'd0;
                    assign hit_m = h ? pt[T_RF +: DW] * N : {DW{1'b0}};
                    assign hit_cf = h ? pt[T_CF +: DW] : {DW{1'b0}};
                end else begin : next
                    assign hit = pick[i-1].hit || h;
                    assign hit_sum = h ? sum_pe[i*N+j] : pick[i-1].hit_sum;
                    assign hit_m = h ? pt[T_RF +: DW] * N + i : pick[i-1].hit_m;
                    assign hit_cf = h ? pt[T_CF +: DW] : pick[i-1].hit_cf;
                end
            end
            wire [TAG_W-1:0] bottom = tag_h[(N-1)*(N+1)+j];
            wire [31:0]      val    = os_r ? pick[N-1].hit_sum : sum_pe[(N-1)*N+j];
            wire [DW-1:0]    m_idx  = os_r ? pick[N-1].hit_m : m_line[DW*(N-2+j) +: DW];
            wire [DW-1:0]    cf     = os_r ? pick[N-1].hit_cf : bottom[T_CF +: DW];
            wire             we     = (os_r ? pick[N-1].hit : bottom[T_VALID])
                                      && m_idx < m_r && cf * N + j < n_r;
            wire             accum  = !os_r && !bottom[T_FIRST];
            wire [AW-1:0]    addr   = m_idx * FOLDS_MAX + cf;
            reg  [31:0]      mem [0:DEPTH-1];
            always @(posedge clk)
                if (we) mem[addr] <= accum ? mem[addr] + val : val;
            assign acc_rdata[32*j +: 32] = mem[acc_addr];
        end
    endgenerate

    // ---- start / done / cycle counter ----------------------------------------------------
    always @(posedge clk) begin
        if (rst) begin
            busy <= 1'b0; done <= 1'b0; cycles <= 32'd0;
            m_r <= 0; n_r <= 0; k_r <= 0; os_r <= 1'b0; ov_r <= 1'b0; int4_r <= 1'b0;
        end else if (go) begin
            busy <= 1'b1; done <= 1'b0; cycles <= 32'd0;
            m_r <= cfg_m; n_r <= cfg_n; k_r <= cfg_k; os_r <= cfg_os; ov_r <= cfg_overlap;
            int4_r <= cfg_int4;
        end else if (busy) begin
            cycles <= cycles + 32'd1;
            if (fin) begin
                busy <= 1'b0; done <= 1'b1;
            end
        end
    end
endmodule

`default_nettype wire
